"""Starlette and FastAPI: one scope per HTTP request and per WebSocket connection.

:class:`ScopeMiddleware` is a pure ASGI middleware, so context variables work
across it (``BaseHTTPMiddleware`` runs the app in another task and breaks
them)::

    app = FastAPI()
    app.add_middleware(ScopeMiddleware, container=container)

For every ``"http"`` and ``"websocket"`` connection it opens
``scope(container, name, values={request_key: request_or_websocket})``, runs
the app inside it and closes it; ``"lifespan"`` and any other ASGI scope type
pass through untouched.

When a request commits
    The scope closes cleanly, so a session resource commits, only when the
    response is complete and its status is below 400.  Any 4xx or 5xx
    response closes it with :class:`ErrorResponse`, so finalisers roll back.
    This includes an ``HTTPException`` or a validation error: Starlette turns
    those into responses inside this middleware, which only sees the status.

The client never receives a complete success response before the commit
    The ``http.response.start`` message is held back.  When the final body
    message (``more_body`` false) arrives, the scope is closed first and only
    then are the held messages sent.  If closing fails (a finaliser raised,
    e.g. the commit broke a constraint), a plain ``500 Internal Server Error``
    is sent instead and the :class:`~dependency_injector_scoped.errors.FinalizerError`
    is raised into the app and on to the server, which logs it; the app's
    background tasks do not run.

When the app raises
    The scope closes with the exception (finalisers roll back) and the
    exception is re-raised.  A held response start is dropped, so the error
    middleware outside can still answer 500.

Streaming responses
    A response with several body messages sends its status and headers with
    the first chunk, before the commit; the scope closes after the last chunk,
    before the final body message is sent.  If closing fails then, the error
    is raised and the server aborts the response, so the client sees an
    incomplete response, never a complete one.

Responses sent from a helper task
    A scope can only be closed by the task that opened it.  Starlette sends
    streaming and file responses from a helper task when the server speaks an
    ASGI spec version below 2.4 (uvicorn's HTTP does).  The final message is
    then held until the app returns and the scope is closed at that point, so
    the response's background tasks run inside the scope, before the client
    receives the end of the response.

Background tasks
    Starlette runs ``BackgroundTasks`` after the response was sent, which is
    after the scope closed.  Resolving a scoped provider there raises
    :class:`~dependency_injector_scoped.errors.NoActiveScopeError` (the
    request's scope is no longer current) or, from a task that captured the
    request's context, :class:`~dependency_injector_scoped.errors.ScopeClosedError`;
    a finished session is never silently reused.  A background job that needs
    a session opens a scope of its own: ``async with container.scope(): ...``.
    Do not hand objects from the request's scope to background tasks.

WebSockets
    One scope per connection, opened before the app accepts it and closed when
    the app returns, with the exception it raised, if any.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from dependency_injector_scoped import Scope as DIScope
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

    See the module documentation for when the scope commits and how responses
    are held until it has.
    """

    def __init__(
        self,
        app: ASGIApp,
        container: Any,
        *,
        name: str | None = None,
        request_key: Hashable = "request",
    ) -> None:
        self.app = app
        self.container = container
        self.name = name
        self.request_key = request_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: scoped for HTTP and WebSocket, untouched otherwise."""
        if scope["type"] == "http":
            request = Request(scope, receive)
            await self._run_http(self._new_scope(request), scope, receive, send)
        elif scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            await self._run_websocket(self._new_scope(websocket), scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _new_scope(self, connection: Request | WebSocket) -> DIScope:
        return open_scope(self.container, self.name, values={self.request_key: connection})

    async def _run_http(
        self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await _open(di_scope)
        exchange = _HttpExchange(di_scope, scope, receive, send)
        try:
            await self.app(scope, receive, exchange.send_from_app)
        except BaseException as error:
            if di_scope.is_open:
                await _close(di_scope, error)
            raise
        if di_scope.is_open:
            # The final message came from a helper task, or never came.
            await exchange.finish(exchange.final)

    async def _run_websocket(
        self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await _open(di_scope)
        try:
            await self.app(scope, receive, send)
        except BaseException as error:
            await _close(di_scope, error)
            raise
        await _close(di_scope, None)


class _HttpExchange:
    """The response messages of one request, held until its scope has closed."""

    __slots__ = ("di_scope", "final", "receive", "scope", "send", "start", "status_code", "task_id")

    def __init__(self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send) -> None:
        self.di_scope = di_scope
        self.scope = scope
        self.receive = receive
        self.send = send
        self.task_id = anyio.get_current_task().id
        self.start: Message | None = None
        self.final: Message | None = None
        self.status_code: int | None = None

    async def send_from_app(self, message: Message) -> None:
        """The ``send`` the app sees: hold the start, close the scope before the end."""
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.status_code = message["status"]
            return
        if self.di_scope.is_open and (
            kind == "http.response.pathsend"
            or (kind in _BODY_MESSAGES and not message.get("more_body", False))
        ):
            if anyio.get_current_task().id == self.task_id:
                await self.finish(message)
            else:
                # Only the opening task can close the scope: keep the final
                # message until the app returns to the middleware.
                self.final = message
            return
        await self._send_start()
        await self.send(message)

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
                await PlainTextResponse("Internal Server Error", status_code=500)(
                    self.scope, self.receive, self.send
                )
            raise
        await self._send_start()
        if final is not None:
            await self.send(final)

    async def _send_start(self) -> None:
        if self.start is not None:
            start, self.start = self.start, None
            await self.send(start)


async def _open(di_scope: DIScope) -> None:
    pending = di_scope.init()
    if pending is not None:
        await pending


async def _close(di_scope: DIScope, error: BaseException | None) -> None:
    # Finalisers run to the end even when the request is being cancelled: a
    # session must still roll back and return its connection.
    with anyio.CancelScope(shield=True):
        pending = di_scope.shutdown(error)
        if pending is not None:
            await pending
