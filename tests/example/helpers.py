"""Helpers for driving ASGI apps and reading the example's SQLite file directly."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Message

LIFESPAN_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def run_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s lifespan through its whole middleware stack, as a server does."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))
    try:
        await to_app.put({"type": "lifespan.startup"})
        started = await asyncio.wait_for(from_app.get(), LIFESPAN_TIMEOUT)
        assert started["type"] == "lifespan.startup.complete", started
        yield
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await asyncio.wait_for(from_app.get(), LIFESPAN_TIMEOUT)
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await asyncio.wait_for(task, LIFESPAN_TIMEOUT)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def stored_rows(database_path: pathlib.Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, read through a connection of its own (committed data only)."""
    with contextlib.closing(sqlite3.connect(database_path)) as connection:
        return connection.execute(f"select * from {table}").fetchall()  # noqa: S608 - fixed names


def stored_titles(database_path: pathlib.Path) -> list[str]:
    """The committed note titles, sorted."""
    with contextlib.closing(sqlite3.connect(database_path)) as connection:
        return [title for (title,) in connection.execute("select title from notes order by title")]
