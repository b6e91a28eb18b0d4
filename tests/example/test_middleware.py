"""ScopeMiddleware at the ASGI message level: what is sent, and when the scope closes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dependency_injector_scoped import containers, errors, get_current_scope, providers
from dependency_injector_scoped.ext.starlette import ErrorResponse, ScopeMiddleware

from .helpers import ByteChunks, pass_through

ASGI_TIMEOUT = 10


def recording_container(
    log: list[Any], *, fail_commit: bool = False, waits: bool = False
) -> containers.DynamicContainer:
    """A container whose one scoped resource logs when it is created and how its scope ended.

    With ``waits``, its finaliser waits (yields to the event loop) before it
    commits or fails, as a session talking to its database does.
    """

    async def open_resource() -> AsyncIterator[str]:
        log.append("open")
        try:
            yield "resource"
        except BaseException as error:
            log.append(("rollback", error))
            raise
        if waits:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
        if fail_commit:
            raise RuntimeError("commit failed")
        log.append("commit")

    container = containers.DynamicContainer()
    container.resource = providers.ScopedResource(open_resource)
    container.request = providers.ScopedValue("request")
    return container


def captive_container() -> containers.DynamicContainer:
    """A misconfigured container: an app-lifetime Singleton depends on a scoped provider."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedFactory(object)
    container.repository = providers.Singleton(dict, session=container.session)
    return container


INNER_MIDDLEWARE = {
    "none": [],
    "base-http": [Middleware(BaseHTTPMiddleware, dispatch=pass_through)],
    "byte-chunks": [Middleware(ByteChunks)],
}


def build_app(
    container: containers.DynamicContainer, log: list[Any], inner: str = "none"
) -> Starlette:
    """A Starlette app with a few kinds of response, behind ScopeMiddleware and ``inner``."""

    async def use_resource() -> None:
        await container.resource()

    async def ok(request: Request) -> Response:
        await use_resource()
        return PlainTextResponse("ok")

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def missing(request: Request) -> Response:
        await use_resource()
        raise HTTPException(status_code=404)

    async def boom(request: Request) -> Response:
        await use_resource()
        raise RuntimeError("boom")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async def stream(request: Request) -> Response:
        await use_resource()
        return StreamingResponse(chunks())

    async def resolve_in_background() -> None:
        current = get_current_scope()
        try:
            await container.resource()
        except errors.ScopeError as error:
            log.append(("background", type(error).__name__, current is not None and current.closed))

    async def with_background(request: Request) -> Response:
        await use_resource()
        return PlainTextResponse("ok", background=BackgroundTask(resolve_in_background))

    async def stream_with_background(request: Request) -> Response:
        await use_resource()
        return StreamingResponse(chunks(), background=BackgroundTask(resolve_in_background))

    async def echo_request(request: Request) -> Response:
        return PlainTextResponse(container.request().url.path)

    routes = [
        Route("/ok", ok),
        Route("/health", health),
        Route("/missing", missing),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/background", with_background),
        Route("/stream-background", stream_with_background),
        Route("/request", echo_request),
    ]
    middleware = [Middleware(ScopeMiddleware, container=container), *INNER_MIDDLEWARE[inner]]
    return Starlette(routes=routes, middleware=middleware)


def http_scope(path: str, spec_version: str = "2.3") -> Scope:
    """An ASGI HTTP scope for a GET of ``path``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }


async def serve(app: ASGIApp, log: list[Any], path: str, spec_version: str = "2.3") -> None:
    """Serve one request, logging each message the server would send."""
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            log.append(("start", message["status"]))
        else:
            log.append(("body", message.get("body", b""), message.get("more_body", False)))

    with anyio.fail_after(ASGI_TIMEOUT):
        await app(http_scope(path, spec_version), receive, send)


async def start_up(
    app: ASGIApp, lifespan_scope: Scope | None = None
) -> tuple[list[Message], BaseException | None]:
    """Run ``app``'s lifespan, start-up then shut-down: what it sent the server, and what it raised."""
    to_app = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(to_app)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = lifespan_scope or {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    try:
        with anyio.fail_after(ASGI_TIMEOUT):
            await app(scope, receive, send)
    except Exception as error:
        return sent, error
    return sent, None


@pytest.fixture
def log() -> list[Any]:
    """What happened, in order: resource events and messages sent to the server."""
    return []


# When the scope closes, and what the client gets ---------------------------


async def test_response_is_sent_after_the_scope_commits(log: list[Any]) -> None:
    """A success response is held until the scope closed cleanly, then sent whole."""
    await serve(build_app(recording_container(log), log), log, "/ok")
    assert log == ["open", "commit", ("start", 200), ("body", b"ok", False)]


async def test_route_that_resolves_nothing_creates_nothing(log: list[Any]) -> None:
    """Resources are lazy: a request that resolves no scoped provider opens no resource."""
    await serve(build_app(recording_container(log), log), log, "/health")
    assert log == [("start", 200), ("body", b"ok", False)]


async def test_error_status_rolls_back(log: list[Any]) -> None:
    """A response turned from HTTPException(404) closes the scope with ErrorResponse before it is sent."""
    await serve(build_app(recording_container(log), log), log, "/missing")
    assert log[0] == "open"
    assert log[1][0] == "rollback"
    assert isinstance(log[1][1], ErrorResponse)
    assert log[1][1].status_code == 404
    assert log[2] == ("start", 404)


async def test_exception_rolls_back_and_propagates(log: list[Any]) -> None:
    """An exception from the app closes the scope with it, then reaches the server after the 500."""
    with pytest.raises(RuntimeError, match="boom"):
        await serve(build_app(recording_container(log), log), log, "/boom")
    assert log[0] == "open"
    assert log[1][0] == "rollback"
    assert str(log[1][1]) == "boom"
    assert log[2] == ("start", 500)


async def test_failed_commit_replaces_the_response_with_500(log: list[Any]) -> None:
    """A finaliser failing on a clean close sends 500 instead of the held 200 and raises FinalizerError."""
    with pytest.raises(errors.FinalizerError):
        await serve(build_app(recording_container(log, fail_commit=True), log), log, "/ok")
    assert log == ["open", ("start", 500), ("body", b"Internal Server Error", False)]


@pytest.mark.parametrize("spec_version", ["2.4", "2.0"], ids=["same-task", "helper-task"])
async def test_streaming_commits_before_the_final_body_message(
    log: list[Any], spec_version: str
) -> None:
    """A streaming response sends its status and chunks first, and its final message after the commit."""
    await serve(build_app(recording_container(log), log), log, "/stream", spec_version)
    assert log == [
        "open",
        ("start", 200),
        ("body", b"a", True),
        ("body", b"b", True),
        "commit",
        ("body", b"", False),
    ]


@pytest.mark.parametrize("spec_version", ["2.4", "2.0"], ids=["same-task", "helper-task"])
async def test_failed_commit_of_a_stream_never_sends_its_final_message(
    log: list[Any], spec_version: str
) -> None:
    """A stream whose commit fails raises to the server without its final message: never complete."""
    app = build_app(recording_container(log, fail_commit=True), log)
    with pytest.raises(errors.FinalizerError):
        await serve(app, log, "/stream", spec_version)
    assert log == ["open", ("start", 200), ("body", b"a", True), ("body", b"b", True)]


async def test_base_http_middleware_response_is_sent_after_the_commit(log: list[Any]) -> None:
    """Behind BaseHTTPMiddleware (whole body with more_body, then an empty end), the commit runs first."""
    await serve(build_app(recording_container(log), log, "base-http"), log, "/ok")
    assert log == ["open", "commit", ("start", 200), ("body", b"ok", True), ("body", b"", False)]


async def test_failed_commit_behind_base_http_middleware_answers_500(log: list[Any]) -> None:
    """Behind BaseHTTPMiddleware a failing commit sends 500 instead of the held 200, then raises."""
    app = build_app(recording_container(log, fail_commit=True), log, "base-http")
    with pytest.raises(errors.FinalizerError):
        await serve(app, log, "/ok")
    assert log == ["open", ("start", 500), ("body", b"Internal Server Error", False)]


async def test_chunked_content_length_body_commits_before_its_last_byte(log: list[Any]) -> None:
    """A content-length body sent in chunks commits before the chunk that completes it."""
    await serve(build_app(recording_container(log), log, "byte-chunks"), log, "/ok")
    assert log == [
        "open",
        ("start", 200),
        ("body", b"o", True),
        "commit",
        ("body", b"k", True),
        ("body", b"", False),
    ]


async def test_failed_commit_withholds_the_last_byte_of_a_content_length_body(
    log: list[Any],
) -> None:
    """When the commit of a chunked content-length body fails, its last byte is never sent."""
    app = build_app(recording_container(log, fail_commit=True), log, "byte-chunks")
    with pytest.raises(errors.FinalizerError):
        await serve(app, log, "/ok")
    assert log == ["open", ("start", 200), ("body", b"o", True)]


# Finalisers that wait ------------------------------------------------------------


@pytest.mark.parametrize("fail_commit", [False, True], ids=["commits", "fails"])
async def test_finaliser_that_waits_ends_before_the_response(
    log: list[Any], fail_commit: bool
) -> None:
    """A finaliser that yields to the loop commits before the held 200, or fails into a 500."""
    app = build_app(recording_container(log, fail_commit=fail_commit, waits=True), log)
    if fail_commit:
        with pytest.raises(errors.FinalizerError):
            await serve(app, log, "/ok")
        assert log == ["open", ("start", 500), ("body", b"Internal Server Error", False)]
    else:
        await serve(app, log, "/ok")
        assert log == ["open", "commit", ("start", 200), ("body", b"ok", False)]


async def test_cancelling_the_app_does_not_interrupt_a_waiting_finaliser(log: list[Any]) -> None:
    """An anyio cancel scope around the app, cancelled while the commit waits, leaves the commit to finish."""
    finalising = anyio.Event()

    async def open_resource() -> AsyncIterator[str]:
        yield "resource"
        finalising.set()
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        log.append("commit")

    container = containers.DynamicContainer()
    container.resource = providers.ScopedResource(open_resource)

    async def ok(request: Request) -> Response:
        await container.resource()
        return PlainTextResponse("ok")

    def cancelled_while_finalising(app: ASGIApp) -> ASGIApp:
        async def cancelling(scope: Scope, receive: Receive, send: Send) -> None:
            async with anyio.create_task_group() as group:

                async def cancel_once_finalising() -> None:
                    await finalising.wait()
                    log.append("cancel")
                    group.cancel_scope.cancel()

                group.start_soon(cancel_once_finalising)
                await app(scope, receive, send)

        return cancelling

    app = Starlette(
        routes=[Route("/ok", ok)],
        middleware=[
            Middleware(ScopeMiddleware, container=container),
            Middleware(cancelled_while_finalising),
        ],
    )
    await serve(app, log, "/ok")
    assert log == ["cancel", "commit", ("start", 200), ("body", b"ok", False)]


# Background tasks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "spec_version", "inner"),
    [
        ("/background", "2.3", "none"),
        ("/stream-background", "2.4", "none"),
        ("/stream-background", "2.0", "none"),
        ("/background", "2.3", "base-http"),
    ],
    ids=["plain", "stream-same-task", "stream-helper-task", "behind-base-http"],
)
async def test_background_task_gets_scope_closed_error(
    log: list[Any], path: str, spec_version: str, inner: str
) -> None:
    """A background task runs after the commit, with the closed scope current: ScopeClosedError."""
    await serve(build_app(recording_container(log), log, inner), log, path, spec_version)
    assert log.index("commit") < log.index(("background", "ScopeClosedError", True))
    assert log[-1] == ("background", "ScopeClosedError", True)


async def test_scope_is_left_when_the_app_returns(log: list[Any]) -> None:
    """After the request the middleware's caller no longer sees the request's scope."""
    await serve(build_app(recording_container(log), log), log, "/background")
    assert get_current_scope() is None


# Values and names ---------------------------------------------------------------


async def test_request_is_given_to_the_scope(log: list[Any]) -> None:
    """ScopedValue("request") resolves to the request being served."""
    await serve(build_app(recording_container(log), log), log, "/request")
    assert ("body", b"/request", False) in log


async def test_named_scope_binds_providers_declared_with_that_name(log: list[Any]) -> None:
    """With name="request", resources declared with scope="request" are opened and closed per request."""

    async def open_resource() -> AsyncIterator[str]:
        log.append("open")
        yield "resource"
        log.append("commit")

    container = containers.DynamicContainer()
    container.resource = providers.ScopedResource(open_resource, scope="request")

    async def ok(request: Request) -> Response:
        await container.resource()
        current = get_current_scope()
        assert current is not None
        return PlainTextResponse(current.name)

    app = Starlette(
        routes=[Route("/ok", ok)],
        middleware=[Middleware(ScopeMiddleware, container=container, name="request")],
    )
    await serve(app, log, "/ok")
    assert log == ["open", "commit", ("start", 200), ("body", b"request", False)]


# Lifespan -------------------------------------------------------------------------


async def test_lifespan_messages_pass_through(log: list[Any]) -> None:
    """The app gets the server's lifespan scope and messages, with no scope open; its replies reach the server."""
    seen: list[Any] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend([scope, await receive(), get_current_scope()])
        await send({"type": "lifespan.startup.complete"})
        seen.append(await receive())
        await send({"type": "lifespan.shutdown.complete"})

    lifespan_scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent, error = await start_up(ScopeMiddleware(inner, recording_container(log)), lifespan_scope)
    assert error is None
    assert seen == [
        lifespan_scope,
        {"type": "lifespan.startup"},
        None,
        {"type": "lifespan.shutdown"},
    ]
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert log == []


async def test_captive_container_fails_startup_before_the_app_sees_it() -> None:
    """At lifespan.startup a captive raises, the server gets startup.failed naming it, and the app never starts."""
    seen: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        await send({"type": "lifespan.startup.complete"})

    sent, error = await start_up(ScopeMiddleware(inner, captive_container()))
    assert isinstance(error, errors.CaptiveDependencyError)
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert "CaptiveDependencyError" in sent[0]["message"]
    assert "Singleton 'repository'" in sent[0]["message"]
    assert seen == []


async def test_captive_container_fails_a_starlette_apps_startup() -> None:
    """A Starlette app with a captive container reports startup.failed once and never runs its lifespan."""
    started: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append("started")
        yield

    container = captive_container()
    app = Starlette(
        lifespan=lifespan, middleware=[Middleware(ScopeMiddleware, container=container)]
    )
    sent, error = await start_up(app)
    assert isinstance(error, errors.CaptiveDependencyError)
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert started == []


async def test_startup_failure_is_reported_once() -> None:
    """An app that catches the check's error and reports startup.failed itself is not heard twice."""

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await receive()
        except errors.CaptiveDependencyError as error:
            await send({"type": "lifespan.startup.failed", "message": str(error)})

    sent, error = await start_up(ScopeMiddleware(inner, captive_container()))
    assert error is None
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert "CaptiveDependencyError" in sent[0]["message"]


def test_middleware_does_not_check_when_it_is_built() -> None:
    """Building the middleware with a captive container does not raise: Starlette builds it lazily."""
    ScopeMiddleware(PlainTextResponse("ok"), captive_container())


def test_middleware_module_is_not_imported_by_the_package() -> None:
    """Importing the package does not import the Starlette integration module."""
    import subprocess
    import sys

    code = (
        "import sys, dependency_injector_scoped; "
        "sys.exit('dependency_injector_scoped.ext.starlette' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
