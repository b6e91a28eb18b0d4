# Two entry points that do all the set-up on a fresh machine:
#   make demo   build, install and serve the example app on SQLite (127.0.0.1:8000)
#   make test   build and install the package, then run the test suite against it
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench venv install clean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# The package is installed from a built wheel, not imported from src/, so the
# tests exercise what users install.
install: venv
	$(BIN)/python -m pip install --force-reinstall --no-deps . && $(BIN)/python -m pip install . -r requirements/test.txt

demo: install
	$(BIN)/python -m examples.app

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pip install -r requirements/bench.txt
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist wheelhouse src/*.egg-info src/dependency_injector_scoped/*.c src/dependency_injector_scoped/*.so
