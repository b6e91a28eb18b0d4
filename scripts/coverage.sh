#!/usr/bin/env bash
# Coverage of the Python modules and of the compiled .pyx code, with floors.
#
#   bash scripts/coverage.sh PYTHON PYX_FLOOR [PYTEST_ARGS...]
#
# PYTHON: the interpreter of a venv with requirements/coverage.txt installed
# (`make coverage` makes .venv-cov).  PYX_FLOOR: the lowest accepted coverage
# of the .pyx files, in percent; the floor of the whole (Python and .pyx) is
# `fail_under` in pyproject.toml.
#
#   1. The working tree (git's tracked and unignored files, uncommitted edits
#      included) is copied to build/coverage/tree: the extensions built in
#      place in src/ are never touched.
#   2. There the extensions are compiled with line tracing (DIS_LINETRACE=1)
#      and the copy is installed, editable, into PYTHON's venv.
#   3. The test suite runs there under coverage.py with Cython's plugin
#      (`[tool.coverage.*]` in pyproject.toml).
#   4. The report lists every file, then the Python and the .pyx totals; an
#      HTML report goes to build/coverage/html.  Either floor missed fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ $# -lt 2 ]]; then
    echo "usage: $0 PYTHON PYX_FLOOR [PYTEST_ARGS...]" >&2
    exit 2
fi
PYTHON=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PYX_FLOOR=$2
shift 2
OUT=$ROOT/build/coverage
TREE=$OUT/tree
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '== %s\n' "$*"; }
started=$SECONDS

step "copying the working tree to ${TREE#"$ROOT"/}"
rm -rf "$TREE" "$OUT/html"
mkdir -p "$TREE"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
    rsync -a --from0 --files-from=- --ignore-missing-args "$ROOT/" "$TREE/"

step "compiling the extensions with line tracing (DIS_LINETRACE=1) and installing the copy"
(cd "$TREE" && DIS_LINETRACE=1 "$PYTHON" -m pip install -q --no-build-isolation --no-deps -e .) \
    >"$OUT/build.log" 2>&1 || {
    tail -n 60 "$OUT/build.log" >&2
    exit 1
}
(cd "$OUT" && "$PYTHON" - "$TREE/src" <<'EOF'
import pathlib
import sys

import dependency_injector_scoped._scope as scope_module
import dependency_injector_scoped.providers as providers_module

copy = pathlib.Path(sys.argv[1]).resolve()
for module in (scope_module, providers_module):
    location = pathlib.Path(module.__file__).resolve()
    if copy not in location.parents:
        sys.exit(f"{module.__name__} is imported from {location}, not from {copy}")
print(f"   line-traced extensions: {[pathlib.Path(m.__file__).name for m in (scope_module, providers_module)]}")
EOF
)
printf '   (%ss)\n' "$((SECONDS - started))"

step "the test suite under coverage.py (Cython.Coverage)"
tests_started=$SECONDS
cd "$TREE"
"$PYTHON" -m coverage erase
set +e
"$PYTHON" -m coverage run -m pytest -p no:cacheprovider "$@"
code=$?
set -e
printf '   (%ss)\n' "$((SECONDS - tests_started))"
if [[ $code -ne 0 ]]; then
    echo "the test suite failed under coverage (exit $code)" >&2
    exit "$code"
fi

step "coverage report"
"$PYTHON" -m coverage html -q -d "$OUT/html" --fail-under=0
"$PYTHON" -m coverage report --fail-under=0
python_total=$("$PYTHON" -m coverage report --include='*.py' --format=total --fail-under=0)
pyx_total=$("$PYTHON" -m coverage report --include='*.pyx' --format=total --fail-under=0)
echo "   Python modules: $python_total%   compiled .pyx: $pyx_total%   (html: ${OUT#"$ROOT"/}/html)"
failed=0
# The whole against `fail_under` in pyproject.toml, the .pyx against PYX_FLOOR.
"$PYTHON" -m coverage report --format=total >/dev/null || {
    echo "total coverage is below fail_under in pyproject.toml" >&2
    failed=1
}
"$PYTHON" -m coverage report --include='*.pyx' --format=total --fail-under="$PYX_FLOOR" >/dev/null || {
    echo "coverage of the .pyx files ($pyx_total%) is below $PYX_FLOOR%" >&2
    failed=1
}
printf '   coverage: %ss in all\n' "$((SECONDS - started))"
exit "$failed"
