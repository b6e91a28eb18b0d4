"""The ABI guard: any other dependency-injector release fails at import, cleanly.

The compiled classes subclass dependency-injector's C structs, whose layout
may change in a patch release.  These tests copy the installed package into
a fresh virtual environment next to another upstream release and import it
there in a subprocess, so a crash would show as a signal, not take the test
run down.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import venv

import pytest

import dependency_injector_scoped

OTHER_RELEASE = "4.49.0"
PYPROJECT = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"

pytestmark = pytest.mark.slow


def _python_of(environment: pathlib.Path) -> pathlib.Path:
    if os.name == "nt":
        return environment / "Scripts" / "python.exe"
    return environment / "bin" / "python"


def _environment_with(root: pathlib.Path, upstream_version: str) -> pathlib.Path:
    """A fresh venv holding ``dependency-injector==upstream_version`` and a copy of this package."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not available to install dependency-injector")
    environment = root / f"upstream-{upstream_version}"
    venv.create(environment, with_pip=False, symlinks=os.name != "nt")
    python = _python_of(environment)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    requirements = [f"dependency-injector=={upstream_version}"]
    if sys.version_info < (3, 11):
        requirements.append("exceptiongroup>=1.1")
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            # Upstream ships no wheel for some platforms (macOS x86_64).
            "--prefer-binary",
            "--target",
            site_packages,
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if installed.returncode != 0:
        problem = f"pip could not install {requirements}: {installed.stderr.strip()[-800:]}"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    package = pathlib.Path(dependency_injector_scoped.__file__).parent
    shutil.copytree(
        package,
        pathlib.Path(site_packages) / "dependency_injector_scoped",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return python


def _run(python: pathlib.Path, code: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [python, "-X", "faulthandler", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


@pytest.fixture(scope="module")
def other_release(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Python of a venv with dependency-injector 4.49.0 and this package."""
    return _environment_with(tmp_path_factory.mktemp("abi"), OTHER_RELEASE)


@pytest.fixture(scope="module")
def matching_release(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Python of a venv with the upstream release this package was compiled against."""
    return _environment_with(
        tmp_path_factory.mktemp("abi"), dependency_injector_scoped.COMPILED_AGAINST
    )


@pytest.fixture(scope="module")
def import_under_other_release(other_release: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """The result of importing the package next to dependency-injector 4.49.0."""
    return _run(other_release, "import dependency_injector_scoped")


def test_other_release_is_installed_in_the_guard_environment(other_release: pathlib.Path) -> None:
    """The guard environment really holds dependency-injector 4.49.0."""
    result = _run(
        other_release, "import dependency_injector; print(dependency_injector.__version__)"
    )
    assert result.stdout.strip() == OTHER_RELEASE


def test_import_fails_with_an_exit_code_not_a_signal(
    import_under_other_release: subprocess.CompletedProcess[str],
) -> None:
    """Importing next to another upstream release exits with status 1, not a crash."""
    assert import_under_other_release.returncode == 1, import_under_other_release.stderr


def test_import_raises_import_error(
    import_under_other_release: subprocess.CompletedProcess[str],
) -> None:
    """The failure is an ImportError, not a warning followed by a crash later."""
    last_line = import_under_other_release.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: ")
    assert "Warning" not in import_under_other_release.stderr


def test_import_error_names_both_versions(
    import_under_other_release: subprocess.CompletedProcess[str],
) -> None:
    """The message names the compiled-against and the installed upstream versions."""
    message = import_under_other_release.stderr.strip().splitlines()[-1]
    assert (
        f"compiled against dependency-injector {dependency_injector_scoped.COMPILED_AGAINST}"
        in message
    )
    assert f"dependency-injector {OTHER_RELEASE} is installed" in message


def test_import_error_says_what_to_install(
    import_under_other_release: subprocess.CompletedProcess[str],
) -> None:
    """The message gives the pip command that installs the matching release."""
    message = import_under_other_release.stderr.strip().splitlines()[-1]
    assert (
        f"pip install dependency-injector=={dependency_injector_scoped.COMPILED_AGAINST}" in message
    )


def test_compiled_submodule_import_is_guarded_too(other_release: pathlib.Path) -> None:
    """Importing the compiled providers module directly hits the same ImportError."""
    result = _run(other_release, "import dependency_injector_scoped.providers")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ImportError: ")


def test_matching_release_imports_and_opens_a_scope(matching_release: pathlib.Path) -> None:
    """With the matching upstream release the same copied package works."""
    code = (
        "from dependency_injector_scoped import containers, providers\n"
        "class Container(containers.DeclarativeContainer):\n"
        "    thing = providers.ScopedFactory(object)\n"
        "container = Container()\n"
        "with container.scope():\n"
        "    assert container.thing() is container.thing()\n"
        "print('ok')\n"
    )
    result = _run(matching_release, code)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def _pyproject() -> dict[str, object]:
    if not PYPROJECT.is_file():
        pytest.skip(f"{PYPROJECT} is not available")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)  # type: ignore[no-any-return]


def _pins(requirements: list[str]) -> list[str]:
    return [
        requirement.split("==", 1)[1].split(";", 1)[0].strip()
        for requirement in requirements
        if requirement.replace(" ", "").startswith("dependency-injector==")
    ]


def test_build_requirement_pins_the_compiled_against_release() -> None:
    """[build-system].requires pins dependency-injector to COMPILED_AGAINST."""
    requires = _pyproject()["build-system"]["requires"]  # type: ignore[index]
    assert _pins(requires) == [dependency_injector_scoped.COMPILED_AGAINST]


def test_runtime_dependency_pins_the_compiled_against_release() -> None:
    """[project].dependencies pins dependency-injector to COMPILED_AGAINST."""
    dependencies = _pyproject()["project"]["dependencies"]  # type: ignore[index]
    assert _pins(dependencies) == [dependency_injector_scoped.COMPILED_AGAINST]


def test_installed_metadata_pins_the_compiled_against_release() -> None:
    """The installed distribution requires exactly the compiled-against upstream release."""
    try:
        requires = importlib.metadata.requires("dependency-injector-scoped") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("dependency-injector-scoped is not installed (imported from sources)")
    assert _pins(requires) == [dependency_injector_scoped.COMPILED_AGAINST]
