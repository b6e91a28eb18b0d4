"""Helpers for the FastAPI tests: a real uvicorn server on 127.0.0.1, lifespans, thread identities."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LIFESPAN_TIMEOUT = 10.0
SERVER_TIMEOUT = 10.0
CLIENT_TIMEOUT = 20.0


class Server:
    """A uvicorn server running an app in a thread of its own; ``loop_thread`` is that thread's id."""

    def __init__(self, base_url: str, thread: threading.Thread) -> None:
        self.base_url = base_url
        self.thread = thread

    @property
    def loop_thread(self) -> int:
        """The identity of the thread that runs the server's event loop."""
        ident = self.thread.ident
        assert ident is not None
        return ident


@contextlib.contextmanager
def serving(app: ASGIApp, **config: Any) -> Iterator[Server]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port.

    The server runs the app's lifespan and is stopped, within
    ``SERVER_TIMEOUT``, when the block exits; ``config`` goes to
    ``uvicorn.Config``.
    """
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    options: dict[str, Any] = {"lifespan": "on", "log_level": "critical", "log_config": None}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.02)
        yield Server(f"http://127.0.0.1:{port}", thread)
    finally:
        server.should_exit = True
        thread.join(SERVER_TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not stop in time"


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


@contextlib.asynccontextmanager
async def asgi_client(
    app: ASGIApp, *, raise_app_exceptions: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for ``app``, with the app's lifespan run around it."""
    transport = httpx.ASGITransport(app, raise_app_exceptions=raise_app_exceptions)
    async with (
        run_lifespan(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://app.test", timeout=CLIENT_TIMEOUT
        ) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def http_client(server: Server, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client speaking HTTP/1.1 to ``server``; ``options`` go to ``httpx.AsyncClient``."""
    options.setdefault("timeout", CLIENT_TIMEOUT)
    async with httpx.AsyncClient(base_url=server.base_url, **options) as client:
        yield client


async def wait_until(condition: Any, timeout: float = SERVER_TIMEOUT, what: str = "") -> None:
    """Poll the sync ``condition`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)
