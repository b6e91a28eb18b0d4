"""Shared fixtures: the tests run against the installed package, never src/."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest

import dependency_injector_scoped
from support import REQUIRE_SERVICES

POSTGRES_URL = os.environ.get("DIS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("DIS_REQUIRE_POSTGRES") == "1"
REDIS_URL = os.environ.get("DIS_REDIS_URL", "redis://127.0.0.1:6379/0")


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


def _redis_available() -> str | None:
    """Return why Redis is unusable, or None when it answers PING."""
    host, _, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=3) as connection:
            connection.sendall(b"PING\r\n")
            reply = connection.recv(16)
    except OSError as error:
        return f"Redis at {REDIS_URL} is not reachable: {error}"
    if not reply.startswith(b"+PONG"):
        return f"Redis at {REDIS_URL} answered {reply!r} to PING"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL; skips, or fails under CI, when unreachable."""
    problem = _redis_available()
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"DIS_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(problem)
    return REDIS_URL
