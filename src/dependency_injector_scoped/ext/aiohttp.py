"""aiohttp: one scope per request and per WebSocket connection.

:func:`setup` installs :func:`scope_middleware` as the app's outermost
middleware and checks the container's scoped graph at start-up::

    app = web.Application()
    setup(app, container)

For every request the middleware opens ``scope(container, name,
values={request_key: request})``, awaits the handler (and the middlewares
inside it) in that scope and closes it before aiohttp sends the response.
Scoped resources are lazy: a request creates only what it resolves.

At start-up
    :func:`setup` appends a check to ``app.on_startup``
    (:func:`dependency_injector_scoped.check_scopes`): a captive dependency
    raises :class:`~dependency_injector_scoped.errors.CaptiveDependencyError`
    from ``AppRunner.setup()`` (``web.run_app``, the test server), so the app
    never serves.

When a request commits
    The scope closes cleanly, so a session resource commits, only when the
    handler's response has a status below 400.  A returned 4xx or 5xx
    response closes it with :class:`ErrorResponse`, and a raised
    ``web.HTTPException`` of status 400 or more (``HTTPNotFound``,
    ``HTTPConflict``, ...) closes it with that exception, so finalisers roll
    back.  A raised redirect (``HTTPFound`` and the other 3xx) is aiohttp's
    way of answering, not a failure: it commits.  Any other exception closes
    the scope with it and propagates; aiohttp answers 500.

The client never receives a success response before the commit
    A response the handler returns unprepared (``web.Response``,
    ``web.json_response``, ``web.FileResponse``) is sent by aiohttp after the
    middleware returns, so after the scope has closed.  If closing fails (a
    finaliser raised, e.g. the commit broke a constraint), the
    :class:`~dependency_injector_scoped.errors.FinalizerError` is raised in
    place of the response (or of the raised redirect); aiohttp logs it and
    answers 500.  The middleware leaves the scope when it returns (aiohttp
    serves the next request of a keep-alive connection in the same task), so
    ``on_response_prepare`` signals of an unprepared response run outside
    it: resolving a scoped provider there raises
    :class:`~dependency_injector_scoped.errors.NoActiveScopeError`, never
    hands out the finished session.

Streamed responses
    A ``web.StreamResponse`` that the handler prepared has sent its status
    and headers, and the chunks it wrote, before the handler returns, so it
    cannot wait for the commit; its scope closes when the handler returns,
    before aiohttp writes the end of the body (``write_eof``).  If closing
    fails then, the error is raised and aiohttp drops the connection: a
    chunked response gets no terminating chunk, a content-length response
    fewer bytes than declared, so the client sees an incomplete response,
    never a complete one.  Write the body from the handler (the scope is
    open there) and return the prepared response.

WebSockets
    A ``web.WebSocketResponse`` lives inside its handler: one scope per
    connection, from the upgrade request to the handler's return, closed
    cleanly when the handler returns (a failed close is raised to aiohttp,
    which logs it; the connection is over) or with the exception it raised.

Cancellation
    If the request's task is cancelled (aiohttp cancels handlers whose client
    disconnected when ``handler_cancellation`` is on), the scope still closes
    with the ``CancelledError``, so a session rolls back and returns its
    connection before the cancellation propagates.

Synchronous finalisers
    The scope closes asynchronously, so synchronous finalisers (a sync
    SQLAlchemy session's commit) run in a worker thread and the event loop
    keeps serving; see ``ScopedResource(close_in_thread=...)``.  Work done
    after the response (tasks the handler spawned) opens its own scope,
    ``async with container.scope(): ...``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dependency_injector_scoped import Scope as DIScope
from dependency_injector_scoped import check_scopes
from dependency_injector_scoped import scope as open_scope

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

__all__ = ["ErrorResponse", "scope_middleware", "setup"]


class ErrorResponse(Exception):
    """Ends a request's scope whose response has a 4xx or 5xx status, so finalisers roll back.

    It is only delivered to finalisers (thrown into resource generators,
    passed to ``__aexit__``), never raised to the app or the server.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def setup(
    app: web.Application,
    container: Any,
    *,
    name: str | None = None,
    request_key: Hashable = "request",
) -> None:
    """Run each request of ``app`` in a scope of ``container``; check the graph at start-up.

    The middleware goes first in ``app.middlewares``, so every other
    middleware runs inside the scope and its responses decide the outcome.
    ``name`` and ``request_key`` are passed to :func:`scope_middleware`.
    """

    async def check_container(app: web.Application) -> None:
        check_scopes(container)

    app.middlewares.insert(0, scope_middleware(container, name=name, request_key=request_key))
    app.on_startup.append(check_container)


def scope_middleware(
    container: Any, *, name: str | None = None, request_key: Hashable = "request"
) -> Middleware:
    """A middleware that runs each request and WebSocket connection in a scope of ``container``.

    ``name`` names the scopes (providers declared with ``scope="request"``
    bind to ``name="request"``); the ``web.Request`` is given to each scope
    under ``request_key``, for ``providers.ScopedValue(request_key)``.  It
    does not check the container: :func:`setup` does, at start-up.
    """

    @web.middleware
    async def run_in_scope(request: web.Request, handler: Handler) -> web.StreamResponse:
        di_scope = open_scope(container, name, values={request_key: request})
        pending = di_scope.init()
        if pending is not None:
            await pending
        try:
            try:
                response = await handler(request)
            except web.HTTPException as answer:
                # aiohttp raises its responses: only an error status rolls back.
                await _close(di_scope, answer if answer.status >= 400 else None)
                raise
            except BaseException as error:
                await _close(di_scope, error)
                raise
            error_response = None
            if response.status >= 400:
                error_response = ErrorResponse(
                    response.status, f"the response has status {response.status}"
                )
            await _close(di_scope, error_response)
            return response
        finally:
            di_scope._leave()

    return run_in_scope


async def _close(di_scope: DIScope, error: BaseException | None) -> None:
    """Close ``di_scope`` in place with ``error``; a cancellation waits for the close to end."""
    closing = asyncio.ensure_future(di_scope._close_in_place(error))
    cancelled = False
    while True:
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            if closing.done():
                raise
            # Finalisers run to the end: a session must still roll back.
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
