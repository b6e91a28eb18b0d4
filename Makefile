# Two entry points that do all the set-up on a fresh machine:
#   make demo   build, install and serve the example app on SQLite (127.0.0.1:8000)
#   make test   build and install the package, then run the test suite against it
# and: make docs (the documentation site), make bench (the benchmarks).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench docs wheel install clean

WHEEL_DIR := build/wheel

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

install: wheel
	@echo "== installing the wheel and the test requirements into $(VENV)"
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl
	$(BIN)/python -m pip install -q $(WHEEL_DIR)/*.whl -r requirements/test.txt

demo: wheel
	@echo "== installing the wheel and what the demo needs into $(VENV)"
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl
	$(BIN)/python -m pip install -q $(WHEEL_DIR)/*.whl -r requirements/demo.txt
	@echo "== serving examples/app.py on http://127.0.0.1:$${PORT:-8000} (Ctrl-C stops it)"
	$(BIN)/python -m examples.app

test: install
	@echo "== running the test suite"
	$(BIN)/python -m pytest

docs: install
	bash scripts/build_docs.sh $(BIN)/python

bench: install
	$(BIN)/python -m pip install -q -r requirements/bench.txt
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist wheelhouse docs/_build src/*.egg-info src/dependency_injector_scoped/*.c src/dependency_injector_scoped/*.so
