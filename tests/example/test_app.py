"""The example app over ASGI: one session per request, committed before the response."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator

import httpx
import pytest
from examples.app import open_session
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dependency_injector_scoped import errors, providers

from .helpers import stored_rows, stored_titles

CONCURRENT_REQUESTS = 50


async def test_service_and_repositories_share_the_request_session(
    client: httpx.AsyncClient,
) -> None:
    """The service and both repositories of one request get the same session."""
    sessions = (await client.get("/debug/session")).json()
    assert sessions["service"] == sessions["notes"] == sessions["events"]


async def test_each_request_gets_a_new_session(client: httpx.AsyncClient) -> None:
    """Two requests in a row get two different sessions."""
    first = (await client.get("/debug/session")).json()
    second = (await client.get("/debug/session")).json()
    assert first["service"] != second["service"]


async def test_request_value_is_the_current_request(client: httpx.AsyncClient) -> None:
    """ScopedValue("request") gives the request being served."""
    assert (await client.get("/debug/session")).json()["path"] == "/debug/session"


def count_sessions(app: FastAPI) -> list[AsyncSession]:
    """Override the app's session with one that records each session it opens."""
    opened: list[AsyncSession] = []

    async def open_counted_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
        async with contextlib.asynccontextmanager(open_session)(engine) as session:
            opened.append(session)
            yield session

    container = app.state.container
    container.session.override(providers.ScopedResource(open_counted_session, container.engine))
    return opened


async def test_route_that_resolves_nothing_opens_no_session(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """GET /health creates no session; GET /debug/session creates exactly one."""
    opened = count_sessions(app)
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert opened == []
    assert (await client.get("/debug/session")).status_code == 200
    assert len(opened) == 1


async def test_directly_resolved_repository_lists_committed_notes(
    client: httpx.AsyncClient,
) -> None:
    """GET /notes, which awaits container.notes() itself, lists what earlier requests committed."""
    for title in ("b", "a"):
        assert (await client.post("/notes", json={"title": title})).status_code == 201
    listed = await client.get("/notes")
    assert listed.status_code == 200
    assert [note["title"] for note in listed.json()] == ["a", "b"]


async def test_created_note_is_committed_before_the_response(
    client: httpx.AsyncClient, database_path: pathlib.Path
) -> None:
    """A 201 means the note and its event are already committed, seen from another connection."""
    response = await client.post("/notes", json={"title": "groceries"})
    assert response.status_code == 201
    assert stored_titles(database_path) == ["groceries"]
    assert [row[1:] for row in stored_rows(database_path, "events")] == [
        (response.json()["id"], "created", "/notes")
    ]


async def test_unhandled_error_rolls_back(
    client: httpx.AsyncClient, database_path: pathlib.Path
) -> None:
    """An endpoint that writes and then raises answers 500 and leaves nothing behind."""
    response = await client.post("/notes/fail", json={"title": "doomed"})
    assert response.status_code == 500
    assert stored_titles(database_path) == []
    assert stored_rows(database_path, "events") == []


async def test_http_exception_rolls_back(
    client: httpx.AsyncClient, database_path: pathlib.Path
) -> None:
    """An endpoint that writes and then raises HTTPException(400) answers 400 and commits nothing."""
    response = await client.post("/notes/reject", json={"title": "rejected"})
    assert response.status_code == 400
    assert stored_titles(database_path) == []
    assert stored_rows(database_path, "events") == []


async def test_validation_error_response_commits_nothing(
    client: httpx.AsyncClient, database_path: pathlib.Path
) -> None:
    """A request FastAPI rejects (422) leaves the database untouched."""
    response = await client.post("/notes", json={"name": "no title"})
    assert response.status_code == 422
    assert stored_titles(database_path) == []


async def test_failed_commit_answers_500_instead_of_201(
    client: httpx.AsyncClient, database_path: pathlib.Path
) -> None:
    """A duplicate title breaks the unique constraint at commit, behind @app.middleware("http"): 500, never 201."""
    created = await client.post("/notes", json={"title": "twice"})
    assert created.status_code == 201
    # The header proves the response passed through the BaseHTTPMiddleware,
    # which re-sends the body with its content-length before the final message.
    assert "x-process-time" in created.headers
    response = await client.post("/notes", json={"title": "twice"})
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert stored_titles(database_path) == ["twice"]
    assert len(stored_rows(database_path, "events")) == 1


async def test_concurrent_requests_each_get_their_own_session(client: httpx.AsyncClient) -> None:
    """Fifty concurrent requests all succeed, each with one session of its own."""
    responses = await asyncio.gather(
        *(client.get("/debug/session") for _ in range(CONCURRENT_REQUESTS))
    )
    assert [response.status_code for response in responses] == [200] * CONCURRENT_REQUESTS
    sessions = [response.json() for response in responses]
    assert all(seen["service"] == seen["notes"] == seen["events"] for seen in sessions)
    assert len({seen["service"] for seen in sessions}) == CONCURRENT_REQUESTS


async def test_concurrent_creates_are_all_committed(
    client: httpx.AsyncClient, database_path: pathlib.Path
) -> None:
    """Fifty concurrent creates all answer 201 and all their notes are committed."""
    titles = [f"note {number:02}" for number in range(CONCURRENT_REQUESTS)]
    responses = await asyncio.gather(
        *(client.post("/notes", json={"title": title}) for title in titles)
    )
    assert [response.status_code for response in responses] == [201] * CONCURRENT_REQUESTS
    assert stored_titles(database_path) == titles
    assert len(stored_rows(database_path, "events")) == CONCURRENT_REQUESTS


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_background_task_gets_scope_closed_error_with_the_remedy(
    app: FastAPI, client: httpx.AsyncClient, kind: str
) -> None:
    """A background task runs after the scope closed: resolving the session raises ScopeClosedError saying what to do."""
    container = app.state.container
    outcomes: list[object] = []

    async def use_session_async() -> None:
        try:
            outcomes.append(await container.session())
        except errors.ScopeError as error:
            outcomes.append(error)

    def use_session_sync() -> None:
        try:
            outcomes.append(container.session())
        except errors.ScopeError as error:
            outcomes.append(error)

    @app.post("/background")
    async def schedule(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(use_session_async if kind == "async" else use_session_sync)
        return {}

    assert (await client.post("/background")).status_code == 200
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], errors.ScopeClosedError)
    assert "`async with container.scope(): ...`" in str(outcomes[0])


async def test_task_outliving_its_request_gets_scope_closed_error(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A task started by a request that resolves the session after the response raises ScopeClosedError."""
    container = app.state.container
    response_sent = asyncio.Event()
    outcomes: list[object] = []

    async def use_session_later() -> None:
        await response_sent.wait()
        try:
            outcomes.append(await container.session())
        except errors.ScopeError as error:
            outcomes.append(error)

    tasks: list[asyncio.Task[None]] = []

    @app.post("/leak")
    async def leak() -> dict[str, str]:
        tasks.append(asyncio.create_task(use_session_later()))
        return {}

    assert (await client.post("/leak")).status_code == 200
    response_sent.set()
    await asyncio.wait_for(tasks[0], 10)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], errors.ScopeClosedError)
