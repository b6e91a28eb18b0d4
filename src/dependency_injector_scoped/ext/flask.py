"""Flask: one scope per request.

:func:`init_app` wraps the app's WSGI callable so that every request runs in
a scope of its own, and checks the container's scoped graph::

    app = Flask(__name__)
    init_app(app, container)

For every request it opens ``scope(container, name, values={request_key:
flask.request})`` before Flask pushes its request context, so the scope
covers ``before_request`` hooks, the view, error handlers, ``after_request``
and ``teardown_request`` hooks, and the iteration of a streamed body.  The
value is Flask's ``request`` proxy: it stands for the current request
wherever a request context is active.  Scoped resources are lazy: a request
creates only what it resolves.  Each request runs in a copy of the server
thread's context (:mod:`contextvars`), so the scope never leaks into the
next request a server thread handles, and an ``async def`` view (run by
Flask in an event loop of its own) sees it too.

At set-up
    :func:`init_app` runs :func:`dependency_injector_scoped.check_scopes`:
    a captive dependency raises
    :class:`~dependency_injector_scoped.errors.CaptiveDependencyError` there,
    before the app serves anything.

When a request commits
    The scope closes cleanly, so a session resource commits, only when the
    final response's status is below 400.  Any 4xx or 5xx response closes
    it with :class:`ErrorResponse`, so finalisers roll back: ``abort(409)``,
    an error handler that answers 4xx or 5xx, a view returning such a
    status.  Flask turns those into responses before ``teardown_request``
    is called (and then passes it no exception), so the status decides.  An
    unhandled exception closes the scope with that exception: Flask answers
    it with a 500 (or, when it propagates exceptions, as in testing, lets
    it escape the WSGI call, which then closes the scope with it).

The client never receives a complete success response before the commit
    For a response whose body is a sequence (everything but a generator or
    file: ``response.is_streamed`` is false), and for every 4xx or 5xx
    response, the scope closes when Flask sends ``request_finished``, after
    every ``after_request`` function and before the response is handed to
    the server.  If closing fails (a finaliser raised, e.g. the commit
    broke a constraint), the
    :class:`~dependency_injector_scoped.errors.FinalizerError` is raised
    inside Flask's dispatch: Flask logs it, sends ``got_request_exception``
    and answers it as an unhandled exception, with a 500 from its
    ``InternalServerError`` handler, or lets it propagate when
    ``PROPAGATE_EXCEPTIONS`` is on (``app.testing``).  The original response
    is never sent.  ``teardown_request`` functions run after the scope has
    closed; the closed scope stays current for them, so resolving a scoped
    provider there raises
    :class:`~dependency_injector_scoped.errors.ScopeClosedError`, and so do
    ``after_request`` handlers of the 500 that a failed close turns into.

Streamed bodies
    A streamed body (a generator, ``stream_with_context``, ``send_file``)
    of a status below 400 goes to the server with its status and headers
    before the body exists, so it cannot wait for the commit.  The scope
    stays open while the server iterates the body, each step running in the
    request's context, so a
    ``stream_with_context`` generator can still resolve the request's
    session.  It closes when the body is exhausted, before the server ends
    the response.  (A streamed 4xx or 5xx body has already rolled back: it
    gets ScopeClosedError if it resolves a scoped provider.)
    If closing fails then, the error is raised into the server, which aborts
    the response: a chunked response gets no terminating chunk, a
    content-length response fewer bytes than declared, so the client sees
    an incomplete response, never a complete one.  A body that raises closes
    the scope with that error.  A body the server closes before it is
    exhausted (the client went away) closes the body first, then the scope
    with :class:`ErrorResponse`, so it rolls back.

After the response
    Callbacks registered with ``response.call_on_close`` run when the
    server closes the body, after the scope closed: they get
    :class:`~dependency_injector_scoped.errors.ScopeClosedError` if they
    resolve a scoped provider.  Work after the response opens its own scope,
    ``with container.scope(): ...``.  So do CLI commands and code run under
    ``app.app_context()`` or ``app.test_request_context()``, which do not go
    through the WSGI call.

Finalisers
    The scope is synchronous (``with`` semantics): finalisers run in the
    thread that serves the request, in reverse order of creation.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import flask
from flask import Flask, Response, got_request_exception, request_finished

from dependency_injector_scoped import Scope as DIScope
from dependency_injector_scoped import check_scopes
from dependency_injector_scoped import scope as open_scope

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["EXTENSION_KEY", "ErrorResponse", "init_app"]

#: The key of this extension in ``app.extensions``.
EXTENSION_KEY = "dependency_injector_scoped"

# Where a request's scope is found from inside Flask (the WSGI environ).
_ENVIRON_KEY = "dependency_injector_scoped.request"


class ErrorResponse(Exception):
    """Ends a request's scope whose response is not a success, so finalisers roll back.

    It is only delivered to finalisers (thrown into resource generators,
    passed to ``__exit__``), never raised to the app or the server.
    ``status_code`` is the response status, or ``None`` when the response
    never started.
    """

    def __init__(self, status_code: int | None, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def init_app(
    app: Flask,
    container: Any,
    *,
    name: str | None = None,
    request_key: Hashable = "request",
) -> None:
    """Run every request of ``app`` in a scope of ``container``; check its scoped graph now.

    ``name`` names the scopes (providers declared with ``scope="request"``
    bind to ``name="request"``); Flask's ``request`` proxy is given to each
    scope under ``request_key``, for ``providers.ScopedValue(request_key)``.
    Call it once per app, after any other ``app.wsgi_app`` middleware that
    should run inside the scope.  See the module documentation for when the
    scope commits.
    """
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError(f"init_app() was already called for {app!r}")
    check_scopes(container)
    scoped = _ScopedWSGIApp(app.wsgi_app, container, name, request_key)
    app.wsgi_app = scoped  # type: ignore[method-assign]
    # Module-level receivers: blinker holds them weakly.
    request_finished.connect(_close_before_response, app)
    got_request_exception.connect(_record_exception, app)
    app.extensions[EXTENSION_KEY] = scoped


class _ScopedWSGIApp:
    """The app's WSGI callable, run in a scope per request and in a context copy."""

    def __init__(
        self, wsgi_app: WSGIApplication, container: Any, name: str | None, request_key: Hashable
    ) -> None:
        self.wsgi_app = wsgi_app
        self.container = container
        self.name = name
        self.request_key = request_key

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        context = contextvars.copy_context()
        return context.run(self._start, context, environ, start_response)

    def _start(
        self,
        context: contextvars.Context,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        di_scope = open_scope(self.container, self.name, values={self.request_key: flask.request})
        di_scope.__enter__()
        request = _Request(di_scope)
        environ[_ENVIRON_KEY] = request

        def start_response_seen(
            status: str,
            headers: list[tuple[str, str]],
            exc_info: OptExcInfo | None = None,
        ) -> Callable[[bytes], object]:
            request.status_code = int(status.split(None, 1)[0])
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start_response_seen)
        except BaseException as error:
            try:
                request.close(error)
            finally:
                di_scope._leave()
            raise
        return _Body(context, request, body)


class _Request:
    """One request's scope, its response status and the exception Flask handled."""

    __slots__ = ("di_scope", "error", "status_code")

    def __init__(self, di_scope: DIScope) -> None:
        self.di_scope = di_scope
        self.status_code: int | None = None
        self.error: BaseException | None = None

    def close(self, error: BaseException | None) -> None:
        """Close the scope, unless already closed, delivering ``error``; it stays current."""
        if self.di_scope.is_open:
            # No event loop runs in a WSGI thread: this closes synchronously.
            self.di_scope._close_in_place(error)

    def finish(self, status_code: int | None) -> None:
        """Close the scope at the end of a response with ``status_code``."""
        self.close(self.outcome(status_code))

    def outcome(self, status_code: int | None) -> BaseException | None:
        """What the finalisers get for a response with ``status_code``: None for a success."""
        if self.error is not None:
            return self.error
        if status_code is None:
            return ErrorResponse(None, "the response never started")
        if status_code >= 400:
            return ErrorResponse(status_code, f"the response has status {status_code}")
        return None


def _close_before_response(sender: Flask, response: Response, **extra: Any) -> None:
    """``request_finished``: close the scope of a complete body or of an error response."""
    request = flask.request.environ.get(_ENVIRON_KEY)
    # An error response rolls back now, streamed or not: werkzeug iterates
    # the body of an ``abort()`` lazily, and teardown must see one outcome.
    if request is not None and (not response.is_streamed or response.status_code >= 400):
        request.finish(response.status_code)


def _record_exception(sender: Flask, exception: BaseException, **extra: Any) -> None:
    """``got_request_exception``: keep the unhandled exception for the finalisers."""
    request = flask.request.environ.get(_ENVIRON_KEY)
    if request is not None and request.error is None:
        request.error = exception


class _Body:
    """The response body handed to the server: iterated and closed in the request's context.

    The scope closes when the body is exhausted, raises, or is closed early.
    """

    __slots__ = ("body", "context", "iterator", "request")

    def __init__(
        self, context: contextvars.Context, request: _Request, body: Iterable[bytes]
    ) -> None:
        self.context = context
        self.request = request
        self.body = body
        self.iterator: Iterator[bytes] | None = None

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        return self.context.run(self._next)

    def _next(self) -> bytes:
        try:
            if self.iterator is None:
                self.iterator = iter(self.body)
            return next(self.iterator)
        except StopIteration:
            self.request.finish(self.request.status_code)
            raise
        except BaseException as error:
            self.request.close(error)
            raise

    def close(self) -> None:
        """Close the body, then the scope if the body did not end; leave the scope."""
        self.context.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            try:
                if close is not None:
                    close()
            except BaseException as error:
                self.request.close(error)
                raise
            self.request.close(
                ErrorResponse(
                    self.request.status_code, "the server closed the response before its body ended"
                )
            )
        finally:
            self.request.di_scope._leave()
