"""Run the test suite against the installed package, away from the sources.

Usage: ``python scripts/run_tests_outside.py PROJECT_DIR [PYTEST_ARGS...]``

Copies ``PROJECT_DIR/tests`` (with ``examples``, ``docs``, ``benchmarks`` and
``README.md``, which tests import, run or read) and the pytest configuration
into a temporary directory,
checks that ``dependency_injector_scoped`` is imported from the environment
(not from ``PROJECT_DIR/src``), and runs pytest there.  A run
that collects no test fails: pytest's exit code 5 becomes 1.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

NO_TESTS_COLLECTED = 5


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    project = pathlib.Path(argv[0]).resolve()
    pytest_args = argv[1:]
    with tempfile.TemporaryDirectory(prefix="dis-tests-") as directory:
        workdir = pathlib.Path(directory)
        shutil.copytree(project / "tests", workdir / "tests")
        # The example app's tests import ``examples`` from beside ``tests``;
        # the documentation tests run the README's and the docs' examples; the
        # benchmarks' smoke run runs ``benchmarks/run.py``.
        ignored = shutil.ignore_patterns("_build", "results", "__pycache__")
        for name in ("examples", "docs", "benchmarks"):
            if (project / name).is_dir():
                shutil.copytree(project / name, workdir / name, ignore=ignored)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(project / name, workdir / name)
        environment = dict(os.environ)
        environment.pop("PYTHONPATH", None)
        located = subprocess.run(
            [sys.executable, "-c", "import dependency_injector_scoped as m; print(m.__file__)"],
            cwd=workdir,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if located.returncode != 0:
            print(located.stderr, file=sys.stderr)
            print("dependency_injector_scoped is not importable here", file=sys.stderr)
            return 1
        location = pathlib.Path(located.stdout.strip()).resolve()
        if project in location.parents:
            print(f"dependency_injector_scoped was imported from the sources: {location}")
            return 1
        print(f"testing dependency_injector_scoped from {location.parent}", flush=True)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
        code = subprocess.run(command, cwd=workdir, env=environment, check=False).returncode
    if code == NO_TESTS_COLLECTED:
        print("pytest collected no tests: failing the run", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
