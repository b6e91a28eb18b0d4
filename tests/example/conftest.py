"""Fixtures for the example app: a fresh app on a temporary SQLite file per test."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")
pytest.importorskip("httpx")

# ``examples`` lives at the repository root, next to ``tests``; the package
# under test is the installed one, so ``src/`` is deliberately not added.
REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

import httpx  # noqa: E402
from examples.app import create_app  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from .helpers import run_lifespan  # noqa: E402


@pytest.fixture
def database_path(tmp_path: pathlib.Path) -> pathlib.Path:
    """The SQLite file the app writes to."""
    return tmp_path / "notes.db"


@pytest.fixture
def app(database_path: pathlib.Path) -> FastAPI:
    """A fresh example app on ``database_path``."""
    return create_app(f"sqlite+aiosqlite:///{database_path}")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``app``, with the app's lifespan run around it.

    Application errors come back as the 500 responses a server would send,
    instead of being raised into the test.
    """
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with (
        run_lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://notes.test") as client,
    ):
        yield client
