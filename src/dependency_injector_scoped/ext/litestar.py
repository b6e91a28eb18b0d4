"""Litestar: one scope per HTTP request and per WebSocket connection.

:class:`ScopePlugin` adds :class:`ScopeMiddleware` as the app's outermost
middleware and checks the container's scoped graph at start-up::

    app = Litestar(route_handlers=[...], plugins=[ScopePlugin(container)])

For every ``"http"`` and ``"websocket"`` connection that reaches a route, the
middleware opens ``scope(container, name, values={request_key: connection})``
(a :class:`litestar.Request` or :class:`litestar.WebSocket`), runs the route
inside it and closes it.  Scoped resources are lazy: a request creates only
what it resolves.  The module needs only Litestar.

At start-up
    The plugin appends :func:`dependency_injector_scoped.check_scopes` to
    ``on_startup``: a captive dependency raises
    :class:`~dependency_injector_scoped.errors.CaptiveDependencyError` during
    the lifespan start-up, so the server (and ``TestClient``) fails to start.

When a request commits
    The scope closes cleanly, so a session resource commits, only when the
    response is complete and its status is below 400.  Any 4xx or 5xx
    response closes it with :class:`ErrorResponse`, so finalisers roll back.
    Litestar turns an ``HTTPException`` (``NotFoundException``,
    ``ValidationException``, ...) and any other exception into a response
    inside the middleware stack, so the middleware sees its status.  An
    exception that still escapes closes the scope with it and propagates.

The client never receives a complete success response before the commit
    The ``http.response.start`` message is held back.  When the message that
    ends the body arrives (``more_body`` false, or the bytes that complete a
    declared ``content-length``), the scope is closed first and only then
    are the held messages sent.  If closing fails (a finaliser raised, e.g.
    the commit broke a constraint), the held messages are dropped and the
    :class:`~dependency_injector_scoped.errors.FinalizerError` is raised:
    Litestar's app-level exception handling answers it like any unhandled
    error (its 500 handler, its logging), never with the route's 200.

Streamed bodies
    A ``Stream`` response (several body messages without a
    ``content-length``) sends its status with the first chunk, before the
    commit.  The scope closes when the last message arrives, before it is
    sent; if closing fails then, the error is raised and the server aborts
    the response, so the client sees an incomplete response, never a
    complete 2xx.

Background tasks
    Litestar runs a response's ``background`` tasks after sending it, which
    is after the scope closed; the closed scope stays current until the route
    returns, so resolving a scoped provider there raises
    :class:`~dependency_injector_scoped.errors.ScopeClosedError`.  A
    background job that needs a session opens its own scope,
    ``async with container.scope(): ...``.

WebSockets
    One scope per connection, opened before the handler accepts it and
    closed when the handler returns, with the exception it raised, if any.

Synchronous finalisers
    The scope closes asynchronously, so synchronous finalisers (a sync
    SQLAlchemy session's commit) run in a worker thread and the event loop
    keeps serving; see ``ScopedResource(close_in_thread=...)``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

import anyio
from litestar import Request, WebSocket
from litestar.config.app import AppConfig
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from dependency_injector_scoped import Scope as DIScope
from dependency_injector_scoped import check_scopes
from dependency_injector_scoped import scope as open_scope

__all__ = ["ErrorResponse", "ScopeMiddleware", "ScopePlugin"]

_BODY_MESSAGES = frozenset({"http.response.body", "http.response.zerocopysend"})


class ErrorResponse(Exception):
    """Ends a request's scope whose response is not a success, so finalisers roll back.

    It is only delivered to finalisers (thrown into resource generators,
    passed to ``__aexit__``), never raised to the app or the server.
    ``status_code`` is the response status, or ``None`` when the route
    returned without starting a response.
    """

    def __init__(self, status_code: int | None, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class ScopePlugin(InitPlugin):
    """Runs every request and WebSocket connection of the app in a scope of ``container``.

    ``name`` names the scopes (providers declared with ``scope="request"``
    bind to ``name="request"``); the connection is given to each scope
    under ``request_key``, for ``providers.ScopedValue(request_key)``.
    """

    __slots__ = ("container", "name", "request_key")

    def __init__(
        self, container: Any, *, name: str | None = None, request_key: Hashable = "request"
    ) -> None:
        self.container = container
        self.name = name
        self.request_key = request_key

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Put the middleware first and the graph check into ``on_startup``."""
        app_config.middleware.insert(
            0,
            DefineMiddleware(
                ScopeMiddleware,
                container=self.container,
                name=self.name,
                request_key=self.request_key,
            ),
        )
        app_config.on_startup.append(self.check)
        return app_config

    def check(self) -> None:
        """The start-up check of the container's scoped graph."""
        check_scopes(self.container)


class ScopeMiddleware:
    """Pure ASGI middleware that runs each request and WebSocket connection in a scope.

    Use it through :class:`ScopePlugin`, or as
    ``DefineMiddleware(ScopeMiddleware, container=container)`` (then run
    ``check_scopes(container)`` at start-up yourself).
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
        """Handle one connection: scoped for HTTP and WebSocket, passed through otherwise."""
        kind: str = scope["type"]
        if kind == "http":
            connection: Request[Any, Any, Any] | WebSocket[Any, Any, Any] = Request(
                scope, receive, send
            )
        elif kind == "websocket":
            connection = WebSocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)
            return
        di_scope = open_scope(self.container, self.name, values={self.request_key: connection})
        pending = di_scope.init()
        if pending is not None:
            await pending
        try:
            if kind == "http":
                await self._run_http(di_scope, scope, receive, send)
            else:
                await self._run_websocket(di_scope, scope, receive, send)
        finally:
            di_scope._leave()

    async def _run_http(
        self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        exchange = _HttpExchange(di_scope, scope, send)
        try:
            await self.app(scope, receive, exchange.send_from_app)
        except BaseException as error:
            if di_scope.is_open:
                await _close(di_scope, error)
            raise
        if di_scope.is_open:
            await exchange.finish(None)

    async def _run_websocket(
        self, di_scope: DIScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            await self.app(scope, receive, send)
        except BaseException as error:
            await _close(di_scope, error)
            raise
        await _close(di_scope, None)


class _HttpExchange:
    """The response messages of one request, the start held until its scope has closed."""

    __slots__ = ("di_scope", "remaining", "scope", "send", "start", "status_code")

    def __init__(self, di_scope: DIScope, scope: Scope, send: Send) -> None:
        self.di_scope = di_scope
        self.scope = scope
        self.send = send
        self.start: Message | None = None
        self.status_code: int | None = None
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
        fields = cast("dict[str, Any]", message)
        kind: str = fields["type"]
        if kind == "http.response.pathsend":
            return True
        if kind not in _BODY_MESSAGES:
            return False
        if not fields.get("more_body", False):
            return True
        if self.remaining is not None and kind == "http.response.body":
            self.remaining -= len(fields.get("body", b""))
            return self.remaining <= 0
        return False

    async def finish(self, final: Message | None) -> None:
        """Close the scope, then send the held messages, or a 500 if closing failed."""
        status_code = self.status_code
        error: ErrorResponse | None = None
        if final is None or status_code is None:
            error = ErrorResponse(status_code, "the route returned without completing its response")
        elif status_code >= 400:
            error = ErrorResponse(status_code, f"the response has status {status_code}")
        try:
            await _close(self.di_scope, error)
        except Exception:
            if self.start is not None:
                # Nothing was sent: Litestar's exception handling outside
                # answers the error (a 500) through the app's handlers, once
                # it knows that the start it saw pass inside was held back.
                # After a sent start, the server aborts the response.
                self.start = None
                ScopeState.from_scope(self.scope).response_started = False
            raise
        await self._send_start()
        if final is not None:
            await self.send(final)

    async def _send_start(self) -> None:
        if self.start is not None:
            start, self.start = self.start, None
            await self.send(start)


def _content_length(start: Message) -> int | None:
    headers: list[tuple[bytes, bytes]] = cast("dict[str, Any]", start).get("headers", [])
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _close(di_scope: DIScope, error: BaseException | None) -> None:
    # Finalisers run to the end even when the request is being cancelled: a
    # session must still roll back and return its connection.  The closed
    # scope stays current, so background tasks get ScopeClosedError.
    with anyio.CancelScope(shield=True):
        await di_scope._close_in_place(error)
