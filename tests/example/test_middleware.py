"""ScopeMiddleware at the ASGI message level: what is sent, and when the scope closes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from dependency_injector_scoped import containers, errors, get_current_scope, providers
from dependency_injector_scoped.ext.starlette import ErrorResponse, ScopeMiddleware


def recording_container(
    log: list[Any], *, fail_commit: bool = False
) -> containers.DynamicContainer:
    """A container whose one scoped resource logs how its scope ended."""

    async def open_resource() -> AsyncIterator[str]:
        log.append("open")
        try:
            yield "resource"
        except BaseException as error:
            log.append(("rollback", error))
            raise
        if fail_commit:
            raise RuntimeError("commit failed")
        log.append("commit")

    container = containers.DynamicContainer()
    container.resource = providers.ScopedResource(open_resource)
    container.request = providers.ScopedValue("request")
    return container


def build_app(container: containers.DynamicContainer, log: list[Any]) -> Starlette:
    """A Starlette app with a few kinds of response, behind ScopeMiddleware."""

    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def missing(request: Request) -> Response:
        raise HTTPException(status_code=404)

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    async def with_background(request: Request) -> Response:
        def task() -> None:
            log.append(("background", get_current_scope()))

        return PlainTextResponse("ok", background=BackgroundTask(task))

    async def echo_request(request: Request) -> Response:
        return PlainTextResponse(container.request().url.path)

    routes = [
        Route("/ok", ok),
        Route("/missing", missing),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/background", with_background),
        Route("/request", echo_request),
    ]
    return Starlette(routes=routes, middleware=[Middleware(ScopeMiddleware, container=container)])


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


async def serve(app: Starlette, log: list[Any], path: str, spec_version: str = "2.3") -> None:
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

    with anyio.fail_after(10):
        await app(http_scope(path, spec_version), receive, send)


@pytest.fixture
def log() -> list[Any]:
    """What happened, in order: resource events and messages sent to the server."""
    return []


async def test_response_is_sent_after_the_scope_commits(log: list[Any]) -> None:
    """A success response is held until the scope closed cleanly, then sent whole."""
    await serve(build_app(recording_container(log), log), log, "/ok")
    assert log == ["open", "commit", ("start", 200), ("body", b"ok", False)]


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


async def test_background_task_runs_after_the_scope_closed(log: list[Any]) -> None:
    """A response's background task runs after the scope was closed and is no longer current."""
    await serve(build_app(recording_container(log), log), log, "/background")
    assert log == ["open", "commit", ("start", 200), ("body", b"ok", False), ("background", None)]


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
        current = get_current_scope()
        assert current is not None
        return PlainTextResponse(current.name)

    app = Starlette(
        routes=[Route("/ok", ok)],
        middleware=[Middleware(ScopeMiddleware, container=container, name="request")],
    )
    await serve(app, log, "/ok")
    assert log == ["open", "commit", ("start", 200), ("body", b"request", False)]


async def test_lifespan_passes_through_untouched(log: list[Any]) -> None:
    """Lifespan messages reach the app with the server's own scope, receive and send, and no scope open."""
    seen: list[Any] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend([scope, receive, send, get_current_scope()])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    lifespan_scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await ScopeMiddleware(inner, recording_container(log))(lifespan_scope, receive, send)
    assert seen == [lifespan_scope, receive, send, None]
    assert log == []


def test_middleware_module_is_not_imported_by_the_package() -> None:
    """Importing the package does not import the Starlette integration module."""
    import subprocess
    import sys

    code = (
        "import sys, dependency_injector_scoped; "
        "sys.exit('dependency_injector_scoped.ext.starlette' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
