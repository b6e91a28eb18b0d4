"""Starlette and FastAPI: one scope per HTTP request and per WebSocket connection.

:class:`ScopeMiddleware` is a pure ASGI middleware, so context variables work
across it (``BaseHTTPMiddleware`` runs the app in another task and breaks
them)::

    app = FastAPI()
    app.add_middleware(ScopeMiddleware, container=container)

For every ``"http"`` and ``"websocket"`` connection it opens
``scope(container, name, values={request_key: request_or_websocket})``, runs
the app inside it and closes it.  Scoped resources are lazy: a request
creates only what it resolves, so a route that touches no session opens none.

At start-up
    When the server sends ``lifespan.startup``, the middleware checks the
    container's scoped graph (:func:`dependency_injector_scoped.check_scopes`)
    before the app sees the message.  A captive dependency answers
    ``lifespan.startup.failed`` with the
    :class:`~dependency_injector_scoped.errors.CaptiveDependencyError` and
    raises it, so the server logs it and exits instead of serving 500s.
    Lifespan messages are otherwise passed through unchanged.  Without a
    lifespan (some test clients), the first request's scope runs the same
    check and that request fails with the error.

When a request commits
    The scope closes cleanly, so a session resource commits, only when the
    response is complete and its status is below 400.  Any 4xx or 5xx
    response closes it with :class:`ErrorResponse`, so finalisers roll back.
    This includes an ``HTTPException`` or a validation error: Starlette turns
    those into responses inside this middleware, which only sees the status.

The client never receives a complete success response before the commit
    The ``http.response.start`` message is held back.  When the message that
    ends the body arrives, the scope is closed first and only then are the
    held messages sent.  The body ends with the first message whose
    ``more_body`` is false or, when the start declares a ``content-length``,
    with the message that completes that many bytes, even if more (empty)
    messages follow: ``BaseHTTPMiddleware`` (FastAPI's
    ``@app.middleware("http")``) inside this middleware re-sends a response
    as its whole body with ``more_body`` true, then an empty final message.
    If closing fails (a finaliser raised, e.g. the commit broke a
    constraint), a plain ``500 Internal Server Error`` with
    ``Connection: close`` is sent instead of the held start and the
    :class:`~dependency_injector_scoped.errors.FinalizerError` is raised into
    the app and on to the server, which logs it; the app's background tasks
    do not run.  A server closes the connection of an app that raised (uvicorn
    does); the header tells a keep-alive client so, and its next request
    opens a new connection instead of meeting a reset one.

When the app raises
    The scope closes with the exception (finalisers roll back) and the
    exception is re-raised.  A held response start is dropped, so the error
    middleware outside can still answer 500.

Streamed bodies
    A body sent in several messages without a ``content-length`` (a
    ``StreamingResponse``) sends its status and headers with the first
    chunk, before the commit: the status cannot wait for the whole body.  The
    scope closes when the last message arrives, before it is sent.  If
    closing fails then, the error is raised and the server aborts the
    response (for HTTP/1.1 it closes the connection without the terminating
    chunk), so the client sees a broken, incomplete response, never a
    complete 2xx.  The same holds for a ``content-length`` body sent in
    several chunks: the client gets fewer bytes than declared.  Whichever
    task sends the last message closes the scope (Starlette streams from a
    helper task when the server speaks an ASGI spec version below 2.4, as
    uvicorn does).

Background tasks
    Starlette runs ``BackgroundTasks`` after the response was sent, which is
    after the scope closed; the closed scope stays current until the app
    returns.  Resolving a scoped provider there raises
    :class:`~dependency_injector_scoped.errors.ScopeClosedError`, whose
    message gives the remedy: a background job that needs a session opens a
    scope of its own, ``async with container.scope(): ...``.  A finished
    session is never silently reused.  Do not hand objects from the
    request's scope to background tasks.

Synchronous finalisers
    The request's scope closes asynchronously, so the synchronous finalisers
    of its resources (a sync SQLAlchemy session's commit) run in a worker
    thread and the event loop keeps serving other requests meanwhile; see
    ``ScopedResource(close_in_thread=...)``.

WebSockets
    One scope per connection, opened before the app accepts it and closed when
    the app returns, with the exception it raised, if any.
"""

from __future__ import annotations

import traceback
import types
from collections.abc import Generator, Hashable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from dependency_injector_scoped import Scope as DIScope
from dependency_injector_scoped import check_scopes
from dependency_injector_scoped import scope as open_scope

__all__ = ["ErrorResponse", "ScopeMiddleware"]

# Body messages that end the response when ``more_body`` is false.
_BODY_MESSAGES = frozenset({"http.response.body", "http.response.zerocopysend"})


class ErrorResponse(Exception):
    """Ends a request's scope whose response is not a success, so finalisers roll back.

    It is only delivered to finalisers (thrown into resource generators,
    passed to ``__aexit__``), never raised to the app or the server.
    ``status_code`` is the response status, or ``None`` when the app returned
    without starting a response.
    """

    def __init__(self, status_code: int | None, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class ScopeMiddleware:
    """Pure ASGI middleware that runs each request and WebSocket connection in a scope.

    ``container`` is any dependency-injector container; ``name`` names the
    scopes it opens (providers declared with ``scope="request"`` bind to
    ``name="request"``); the connection's :class:`~starlette.requests.Request`
    or :class:`~starlette.websockets.WebSocket` is given to the scope under
    ``request_key``, for ``providers.ScopedValue(request_key)``.

    The container's scoped graph is checked at lifespan start-up.  See the
    module documentation for when the scope commits and how responses are
    held until it has.
    """

    def __init__(
        self,
        app: ASGIApp,
        container: Any,
        *,
        name: str | None = None,
        request_key: Hashable = "request",
    ) -> None:
        # No check here: Starlette builds its middleware lazily, inside the
        # first ASGI call, where an error is not a failed start-up.
        self.app = app
        self.container = container
        self.name = name
        self.request_key = request_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: scoped for HTTP and WebSocket, checked at start-up."""
        if scope["type"] == "http":
            request = Request(scope, receive)
            await self._run_http(self._new_scope(request), scope, receive, send)
        elif scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            await self._run_websocket(self._new_scope(websocket), scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._run_lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _new_scope(self, connection: Request | WebSocket) -> DIScope:
        return open_scope(self.container, self.name, values={self.request_key: connection})

    async def _run_http(
        self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await _open(di_scope)
        try:
            exchange = _HttpExchange(di_scope, scope, receive, send)
            try:
                await self.app(scope, receive, exchange.send_from_app)
            except BaseException as error:
                if di_scope.is_open:
                    await _close(di_scope, error)
                raise
            if di_scope.is_open:
                # The app returned without completing its response.
                await exchange.finish(None)
        finally:
            di_scope._leave()

    async def _run_websocket(
        self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await _open(di_scope)
        try:
            try:
                await self.app(scope, receive, send)
            except BaseException as error:
                await _close(di_scope, error)
                raise
            await _close(di_scope, None)
        finally:
            di_scope._leave()

    async def _run_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed = False

        async def receive_checked() -> Message:
            nonlocal failed
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    check_scopes(self.container)
                except Exception:
                    # Report the failure ourselves: Starlette's router awaits
                    # the start-up message outside the block that would send
                    # "startup.failed", and uvicorn's default lifespan="auto"
                    # takes a bare exception for "lifespan unsupported" and
                    # serves anyway.
                    failed = True
                    await send(
                        {"type": "lifespan.startup.failed", "message": traceback.format_exc()}
                    )
                    raise
            return message

        async def send_unless_failed(message: Message) -> None:
            # An app that catches the error must not report start-up twice.
            if not (failed and message["type"].startswith("lifespan.startup.")):
                await send(message)

        await self.app(scope, receive_checked, send_unless_failed)


class _HttpExchange:
    """The response messages of one request, held until its scope has closed."""

    __slots__ = ("di_scope", "receive", "remaining", "scope", "send", "start", "status_code")

    def __init__(self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send) -> None:
        self.di_scope = di_scope
        self.scope = scope
        self.receive = receive
        self.send = send
        self.start: Message | None = None
        self.status_code: int | None = None
        # Body bytes still to come when the start declared a content-length.
        self.remaining: int | None = None

    async def send_from_app(self, message: Message) -> None:
        """The ``send`` the app sees: hold the start, close the scope before the body ends."""
        if message["type"] == "http.response.start":
            self.start = message
            self.status_code = message["status"]
            self.remaining = _content_length(message)
            return
        if self.di_scope.is_open and self._ends_body(message):
            await self.finish(message)
            return
        await self._send_start()
        await self.send(message)

    def _ends_body(self, message: Message) -> bool:
        """Whether ``message`` completes the response body (counting declared bytes)."""
        kind = message["type"]
        if kind == "http.response.pathsend":
            return True
        if kind not in _BODY_MESSAGES:
            return False
        if not message.get("more_body", False):
            return True
        if self.remaining is not None and kind == "http.response.body":
            self.remaining -= len(message.get("body", b""))
            return self.remaining <= 0
        return False

    async def finish(self, final: Message | None) -> None:
        """Close the scope, then send the held messages, or a 500 if closing failed."""
        status_code = self.status_code
        error: ErrorResponse | None = None
        if final is None or status_code is None:
            error = ErrorResponse(status_code, "the app returned without completing its response")
        elif status_code >= 400:
            error = ErrorResponse(status_code, f"the response has status {status_code}")
        try:
            await _close(self.di_scope, error)
        except Exception:
            if self.start is not None:
                self.start = None
                # The error is raised on to the server after this response,
                # and a server closes the connection of an app that raised:
                # say so, so a keep-alive client does not reuse it.
                await PlainTextResponse(
                    "Internal Server Error", status_code=500, headers={"connection": "close"}
                )(self.scope, self.receive, self.send)
            # Raised after a start was sent, the server aborts the response.
            raise
        await self._send_start()
        if final is not None:
            await self.send(final)

    async def _send_start(self) -> None:
        if self.start is not None:
            start, self.start = self.start, None
            await self.send(start)


def _content_length(start: Message) -> int | None:
    for key, value in start.get("headers", ()):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _open(di_scope: DIScope) -> None:
    pending = di_scope.init()
    if pending is not None:
        await pending


async def _close(di_scope: DIScope, error: BaseException | None) -> None:
    # Finalisers run to the end even when the request is being cancelled: a
    # session must still roll back and return its connection.  The closed
    # scope stays current, so background tasks get ScopeClosedError.
    steps = di_scope._close_in_place(error).__await__()
    try:
        # Up to the first wait.  Nothing can cancel the task before it waits,
        # so a close that never waits (sync finalisers run inline, an async
        # session without a connection) needs no shield, which costs more
        # than such a close.
        waiting_for = steps.send(None)
    except StopIteration:
        return
    with anyio.CancelScope(shield=True):
        await _resume(steps, waiting_for)


@types.coroutine
def _resume(steps: Generator[Any, Any, Any], waiting_for: Any) -> Generator[Any, Any, None]:
    """Await the rest of an awaitable already run up to ``waiting_for`` (``yield from``, resumed)."""
    while True:
        try:
            sent = yield waiting_for
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as error:
            try:
                waiting_for = steps.throw(error)
            except StopIteration:
                return
        else:
            try:
                waiting_for = steps.send(sent)
            except StopIteration:
                return
