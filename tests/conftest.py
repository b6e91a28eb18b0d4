"""Shared fixtures: the tests run against the installed package, never src/."""

from __future__ import annotations

import os
import pathlib

import pytest

import dependency_injector_scoped

POSTGRES_URL = os.environ.get("DIS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("DIS_REQUIRE_POSTGRES") == "1"


def pytest_report_header(config: pytest.Config) -> str:
    location = pathlib.Path(dependency_injector_scoped.__file__).parent
    return f"dependency_injector_scoped {dependency_injector_scoped.__version__} from {location}"


def _postgres_available() -> str | None:
    """Return why PostgreSQL is unusable, or None when it answers."""
    try:
        import psycopg
    except ImportError as error:  # pragma: no cover - test requirements install it
        return f"psycopg is not installed: {error}"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("select 1")
    except Exception as error:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL URL (psycopg form); skips, or fails under CI, when unreachable."""
    problem = _postgres_available()
    if problem is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"DIS_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    return POSTGRES_URL
