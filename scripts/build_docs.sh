#!/usr/bin/env bash
# Build the documentation site with warnings as errors.
#
#   bash scripts/build_docs.sh PYTHON
#
# PYTHON is the interpreter of a virtual environment where the package is
# installed (the API reference imports it); requirements/docs.txt is installed
# into that environment. Nothing is written outside it and docs/_build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 1 ]; then
    echo "usage: $0 PYTHON" >&2
    exit 2
fi
PYTHON=$1

export PYTHONDONTWRITEBYTECODE=1
"$PYTHON" -m pip install -q --no-cache-dir --disable-pip-version-check -r requirements/docs.txt
"$PYTHON" -c "import dependency_injector_scoped" || {
    echo "$0: dependency_injector_scoped is not installed for $PYTHON" >&2
    exit 1
}
rm -rf docs/_build
"$PYTHON" -m sphinx -W --keep-going -b html -d docs/_build/doctrees docs docs/_build/html
echo "docs: docs/_build/html/index.html"
