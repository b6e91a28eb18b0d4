"""Helpers: driving ASGI apps and servers, middleware to put inside ScopeMiddleware, reading SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from starlette.middleware.base import RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from typing_extensions import Self

LIFESPAN_TIMEOUT = 10.0
SERVER_TIMEOUT = 10.0


async def _call(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    await app(scope, receive, send)


@contextlib.asynccontextmanager
async def run_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s lifespan through its whole middleware stack, as a server does."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": {},
    }
    task = asyncio.create_task(_call(app, scope, to_app.get, from_app.put))
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


async def pass_through(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """A BaseHTTPMiddleware dispatch that changes nothing (it still re-sends the body)."""
    return await call_next(request)


class ByteChunks:
    """A pure ASGI middleware that re-sends each body byte by byte, keeping its content-length.

    Like ``BaseHTTPMiddleware``, every chunk has ``more_body`` true and an
    empty message ends the body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_in_bytes(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            for index in range(len(body)):
                chunk = body[index : index + 1]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, receive, send_in_bytes)


def stored_rows(database_path: pathlib.Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, read through a connection of its own (committed data only)."""
    with contextlib.closing(sqlite3.connect(database_path)) as connection:
        return connection.execute(f"select * from {table}").fetchall()


def stored_titles(database_path: pathlib.Path) -> list[str]:
    """The committed note titles, sorted."""
    with contextlib.closing(sqlite3.connect(database_path)) as connection:
        return [title for (title,) in connection.execute("select title from notes order by title")]


class WebSocketClient:
    """One WebSocket connection to an ASGI app, spoken in ASGI messages."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 1234),
            "server": ("test", 80),
            "subprotocols": [],
        }
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(
            _call(self.app, self.scope, self.to_app.get, self.from_app.put)
        )
        await self.to_app.put({"type": "websocket.connect"})
        accepted = await self._next()
        assert accepted["type"] == "websocket.accept", accepted
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.task is not None
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, LIFESPAN_TIMEOUT)

    async def send_text(self, text: str) -> None:
        """Send a text message to the app."""
        await self.to_app.put({"type": "websocket.receive", "text": text})

    async def receive_json(self) -> Any:
        """Wait for the app's next message and decode it as JSON."""
        message = await self._next()
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def _next(self) -> Message:
        return await asyncio.wait_for(self.from_app.get(), LIFESPAN_TIMEOUT)


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yield its base URL.

    The server runs the app's lifespan (``lifespan="on"``) and is stopped,
    within ``SERVER_TIMEOUT``, when the block exits.
    """
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not stop in time"
