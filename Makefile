# Two entry points that do all the set-up on a fresh machine:
#   make demo   build, install and serve the example app on SQLite (127.0.0.1:8000)
#   make test   build and install the package, then run the test suite against it
# Every other check has one target here, used alike by CONTRIBUTING.md, .ci/run,
# the pre-commit hooks and the CI workflow:
#   make lint             ruff format --check, ruff check (the whole tree), cython-lint
#   make types            mypy --strict, pyright, stubtest against the compiled modules
#   make docs             the documentation site, warnings as errors
#   make check-workflows  the workflows' schema and supply-chain rules
#   make coverage         the suite against a line-traced build: Python and .pyx coverage, floors
#   make wheel-proof      sdist and wheels built, repaired, audited, tested per CPython
#   make bench            the benchmarks
#   make ci               everything .ci/run runs after starting the services, in its order
# The checkers live in a venv of their own (.venv-tools, requirements/tools.txt),
# coverage in another (.venv-cov, requirements/coverage.txt); neither is the test venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS_VENV ?= .venv-tools
TOOLS_BIN := $(TOOLS_VENV)/bin
TOOLS_PYTHON := $(TOOLS_BIN)/python
COVERAGE_VENV ?= .venv-cov
# The lowest accepted coverage of the .pyx files alone (the suite reached 87.0%);
# the floor of the whole is `fail_under` under [tool.coverage.report] in pyproject.toml.
COVERAGE_PYX_FLOOR ?= 84
# Extra pytest arguments for `make test`, e.g. PYTEST_ARGS="-m postgres".
PYTEST_ARGS ?=

.PHONY: demo test bench docs wheel install clean tools lint types check-workflows coverage wheel-proof \
	ci ci-targets

WHEEL_DIR := build/wheel
# Touched when a wheel is built and when it is installed into $(VENV): the
# targets that only need an up-to-date package (docs, types) rebuild nothing
# when no source changed since.
WHEEL_STAMP := $(WHEEL_DIR)/.built
INSTALL_STAMP := $(VENV)/.dis-installed
PACKAGE_SOURCES := setup.py pyproject.toml $(wildcard src/dependency_injector_scoped/*.py \
	src/dependency_injector_scoped/*.pyx src/dependency_injector_scoped/*.pxd \
	src/dependency_injector_scoped/*.pyi src/dependency_injector_scoped/ext/*.py)

venv: $(BIN)/python

$(BIN)/python:
	@echo "== creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The package is installed from a built wheel, not imported from src/, so the
# tests exercise what users install.  The wheel is built once (compiling the
# two Cython extensions takes about a minute) and installed from build/wheel.
wheel: venv
	@echo "== building the wheel (compiles the Cython extensions: about a minute the first time)"
	rm -rf $(WHEEL_DIR)
	$(BIN)/python -m pip wheel -q --no-deps --wheel-dir $(WHEEL_DIR) .
	@touch $(WHEEL_STAMP)

define install_wheel
	@echo "== installing the wheel and the test requirements into $(VENV)"
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl
	$(BIN)/python -m pip install -q $(WHEEL_DIR)/*.whl -r requirements/test.txt
	@touch $(INSTALL_STAMP)
endef

install: wheel
	$(install_wheel)

$(WHEEL_STAMP): $(PACKAGE_SOURCES)
	@$(MAKE) --no-print-directory wheel

$(INSTALL_STAMP): $(WHEEL_STAMP) requirements/test.txt | venv
	$(install_wheel)

demo: wheel
	@echo "== installing the wheel and what the demo needs into $(VENV)"
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl
	$(BIN)/python -m pip install -q $(WHEEL_DIR)/*.whl -r requirements/demo.txt
	@echo "== serving examples/app.py on http://127.0.0.1:$${PORT:-8000} (Ctrl-C stops it)"
	$(BIN)/python -m examples.app

test: install
	@echo "== running the test suite"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: $(INSTALL_STAMP)
	bash scripts/build_docs.sh $(BIN)/python

bench: install
	$(BIN)/python -m pip install -q -r requirements/bench.txt
	$(BIN)/python benchmarks/run.py

# The checkers' venv, remade when its requirements change.
tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: requirements/tools.txt requirements/test.txt
	@echo "== installing the checkers into $(TOOLS_VENV) (requirements/tools.txt)"
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_PYTHON) -m pip install -q --upgrade pip
	$(TOOLS_PYTHON) -m pip install -q -r requirements/tools.txt
	@touch $@

# cython-lint runs pycodestyle from PATH.
lint: tools
	@echo "== ruff format --check, ruff check (the whole tree), cython-lint"
	$(TOOLS_BIN)/ruff format --check .
	$(TOOLS_BIN)/ruff check .
	PATH="$(abspath $(TOOLS_BIN)):$$PATH" $(TOOLS_BIN)/cython-lint \
		src/dependency_injector_scoped/*.pyx src/dependency_injector_scoped/*.pxd

# stubtest imports the compiled modules from the wheel installed into the
# checkers' venv, from a directory where src/ is not importable.
types: tools $(WHEEL_STAMP)
	@echo "== mypy --strict (package and tests/typing), pyright (tests/typing), stubtest"
	$(TOOLS_BIN)/mypy --strict
	$(TOOLS_BIN)/pyright --pythonpath $(TOOLS_PYTHON)
	$(TOOLS_PYTHON) -m pip install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl
	cd $(WHEEL_DIR) && $(abspath $(TOOLS_PYTHON)) -m mypy.stubtest \
		--allowlist $(CURDIR)/tests/typing/stubtest_allowlist.txt \
		dependency_injector_scoped._scope dependency_injector_scoped.providers

check-workflows: tools
	@echo "== the workflows: schema, pinned actions, minimal permissions"
	$(TOOLS_BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(TOOLS_PYTHON) scripts/check_workflows.py .github/workflows/*.yml

$(COVERAGE_VENV)/.installed: requirements/coverage.txt requirements/test.txt
	@echo "== installing coverage.py, Cython and the test requirements into $(COVERAGE_VENV)"
	$(PYTHON) -m venv $(COVERAGE_VENV)
	$(COVERAGE_VENV)/bin/python -m pip install -q --upgrade pip
	$(COVERAGE_VENV)/bin/python -m pip install -q -r requirements/coverage.txt
	@touch $@

# The extensions of a copy of the tree (build/coverage/tree) are compiled with
# line tracing; the ones built in place in src/ are left alone.
coverage: $(COVERAGE_VENV)/.installed
	bash scripts/coverage.sh $(COVERAGE_VENV)/bin/python $(COVERAGE_PYX_FLOOR)

wheel-proof: tools
	bash scripts/wheel_proof.sh $(TOOLS_PYTHON)

# .ci/run starts the services, sets DIS_REQUIRE_POSTGRES=1 and
# DIS_REQUIRE_SERVICES=1, then runs these one by one (`make ci-targets` lists
# them) and times each.
CI_TARGETS := test docs tools lint types check-workflows coverage wheel-proof

ci: $(CI_TARGETS)

ci-targets:
	@echo $(CI_TARGETS)

clean:
	rm -rf $(VENV) $(TOOLS_VENV) $(COVERAGE_VENV) build dist wheelhouse docs/_build src/*.egg-info src/dependency_injector_scoped/*.c src/dependency_injector_scoped/*.so
