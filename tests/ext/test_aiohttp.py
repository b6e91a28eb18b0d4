"""aiohttp: one scope per request and per WebSocket, committed before the response is sent.

Every HTTP behaviour runs through aiohttp's ``TestServer``/``TestClient``
and over a real ``AppRunner``/``TCPSite`` server on 127.0.0.1, with an
async SQLAlchemy session on SQLite (aiosqlite) and PostgreSQL (asyncpg).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dependency_injector_scoped import containers, get_current_scope, providers
from dependency_injector_scoped.errors import CaptiveDependencyError, NoActiveScopeError
from support import require_module

aiohttp = require_module("aiohttp")
sqlalchemy = require_module("sqlalchemy")
require_module("aiosqlite")
require_module("asyncpg")

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import registry  # noqa: E402

from dependency_injector_scoped.ext.aiohttp import ErrorResponse, setup  # noqa: E402

TIMEOUT = 10.0
AFTER_RESPONSE = web.AppKey("after_response", list)


class Item:
    """A row of a store's table (each store maps a subclass to its own table)."""

    def __init__(self, name: str) -> None:
        self.name = name


class Store:
    """A table of unique names and what the request sessions did to it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.metadata = MetaData()
        self.table = Table(
            f"aiohttp_items_{uuid.uuid4().hex[:10]}",
            self.metadata,
            Column("id", Integer, primary_key=True),
            Column("name", String(50), unique=True, nullable=False),
        )
        self.item_class = type("Item", (Item,), {})
        registry().map_imperatively(self.item_class, self.table)
        self.sessions = 0
        self.commits = 0
        self.rollbacks: list[type[BaseException]] = []

    async def open_session(self) -> AsyncIterator[AsyncSession]:
        """The request's session: commit when the scope ends cleanly, else roll back."""
        async with AsyncSession(self.engine) as session:
            self.sessions += 1
            session.info["number"] = self.sessions
            try:
                yield session
            except BaseException as error:
                await session.rollback()
                self.rollbacks.append(type(error))
                raise
            await session.commit()
            self.commits += 1

    async def stored_names(self) -> list[str]:
        """The committed names, read through a connection of their own."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(self.table.c.name).order_by(self.table.c.name))
            return [name for (name,) in rows]


class Repository:
    """Adds names through the request's session; a duplicate breaks the commit."""

    def __init__(self, session: AsyncSession, item_class: type[Item]) -> None:
        self.session = session
        self.item_class = item_class

    def add(self, names: list[str]) -> None:
        """Add ``names`` (inserted at the commit)."""
        self.session.add_all([self.item_class(name) for name in names])


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    """A names table on a SQLite file or on PostgreSQL, dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'items.db'}"
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        url = postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    store = Store(create_async_engine(url))
    async with store.engine.begin() as connection:
        await connection.run_sync(store.metadata.create_all)
    try:
        yield store
    finally:
        async with store.engine.begin() as connection:
            await connection.run_sync(store.metadata.drop_all)
        await store.engine.dispose()


def build_app(store: Store) -> web.Application:
    """An app whose handlers add names through the request-scoped session.

    ``POST /items`` takes ``{"names": [...], "then": ...}``: ``"conflict"``
    raises ``HTTPConflict``, ``"unprocessable"`` returns a 422, ``"raise"``
    raises an error, ``"redirect"`` raises ``HTTPFound``.  ``GET /stream``
    writes a chunked body; ``/ws`` adds one name per message.
    """
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(store.open_session)
    container.items = providers.ScopedFactory(
        Repository, session=container.session, item_class=store.item_class
    )
    container.audit = providers.ScopedFactory(
        Repository, session=container.session, item_class=store.item_class
    )
    container.request = providers.ScopedValue("request")
    routes = web.RouteTableDef()

    @routes.post("/items")
    async def add_items(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        items = await container.items()
        audit = await container.audit()
        items.add(payload["names"])
        outcome = payload.get("then")
        if outcome == "conflict":
            raise web.HTTPConflict(text="conflict")
        if outcome == "unprocessable":
            return web.json_response({"error": "unprocessable"}, status=422)
        if outcome == "raise":
            raise RuntimeError("the handler failed")
        if outcome == "redirect":
            raise web.HTTPFound("/done")
        txid = None
        if store.engine.dialect.name == "postgresql":
            txid = (await items.session.execute(select(func.txid_current()))).scalar_one()
        current = get_current_scope()
        assert current is not None
        return web.json_response(
            {
                "session": items.session.info["number"],
                "shared": items.session is audit.session,
                "same_request": container.request() is request,
                "scope_parent": repr(current.parent),
                "txid": txid,
            }
        )

    @routes.get("/done")
    async def done(request: web.Request) -> web.Response:
        return web.Response(text="done")

    @routes.get("/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for name in request.query["names"].split(","):
            (await container.items()).add([name])
            await response.write(f"{name}\n".encode())
        return response

    @routes.get("/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            items = await container.items()
            items.add([message.data])
            await ws.send_json({"session": items.session.info["number"]})
        return ws

    after_response: list[type[BaseException]] = []

    async def resolve_after_response(request: web.Request, response: web.StreamResponse) -> None:
        try:
            await container.session()
        except NoActiveScopeError as error:
            after_response.append(type(error))

    app = web.Application()
    app.add_routes(routes)
    app.on_response_prepare.append(resolve_after_response)
    app[AFTER_RESPONSE] = after_response
    setup(app, container)
    return app


class Client:
    """Requests to an app, through aiohttp's test client or a real server."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def post(self, names: list[str], then: str | None = None) -> tuple[int, Any]:
        """POST ``/items``: the status and the JSON body (or the text)."""
        payload = {"names": names, "then": then}
        async with self.session.post("/items", json=payload, allow_redirects=False) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` with ``AppRunner`` and ``TCPSite`` on 127.0.0.1; yield the base URL."""
    runner = web.AppRunner(app, shutdown_timeout=TIMEOUT)
    await asyncio.wait_for(runner.setup(), TIMEOUT)
    try:
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await asyncio.wait_for(site.start(), TIMEOUT)
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.wait_for(runner.cleanup(), TIMEOUT)


@pytest.fixture(params=["test-client", "server"])
async def connect(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[web.Application], Any]]:
    """Builds a :class:`Client` for an app: aiohttp's TestClient, or a real server."""
    async with contextlib.AsyncExitStack() as stack:

        async def connect_to(app: web.Application) -> Client:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT)
            if request.param == "test-client":
                client = TestClient(TestServer(app), timeout=timeout)
                await stack.enter_async_context(client)
                return Client(client)
            base_url = await stack.enter_async_context(running(app))
            session = aiohttp.ClientSession(base_url, timeout=timeout)
            await stack.enter_async_context(session)
            return Client(session)

        yield connect_to


async def test_success_commits_one_session_shared_by_two_repositories(
    store: Store, connect: Any
) -> None:
    """A 200 commits; both repositories get the request's one session; requests differ."""
    client = await connect(build_app(store))
    status, first = await client.post(["a", "b"])
    assert status == 200, first
    status, second = await client.post(["c"])
    assert status == 200, second
    assert first["shared"] and second["shared"]
    assert first["same_request"] and first["scope_parent"] == "None"
    assert first["session"] != second["session"]
    if store.engine.dialect.name == "postgresql":
        assert first["txid"] != second["txid"]
    assert await store.stored_names() == ["a", "b", "c"]
    assert store.commits == 2 and store.rollbacks == []


async def test_raised_http_conflict_rolls_back_with_it(store: Store, connect: Any) -> None:
    """A raised ``HTTPConflict`` is aiohttp's 409; the finalisers get the exception."""
    client = await connect(build_app(store))
    assert await client.post(["a"], then="conflict") == (409, "conflict")
    assert await store.stored_names() == []
    assert store.rollbacks == [web.HTTPConflict]


async def test_returned_422_rolls_back(store: Store, connect: Any) -> None:
    """A returned 4xx response rolls back with ErrorResponse."""
    client = await connect(build_app(store))
    status, _ = await client.post(["a"], then="unprocessable")
    assert status == 422
    assert await store.stored_names() == []
    assert store.rollbacks == [ErrorResponse]


async def test_unhandled_exception_rolls_back_with_it(store: Store, connect: Any) -> None:
    """An error becomes aiohttp's 500; the finalisers get the error itself."""
    client = await connect(build_app(store))
    status, _ = await client.post(["a"], then="raise")
    assert status == 500
    assert await store.stored_names() == []
    assert store.rollbacks == [RuntimeError]


async def test_raised_redirect_commits(store: Store, connect: Any) -> None:
    """A raised ``HTTPFound`` is a success: it commits."""
    client = await connect(build_app(store))
    status, _ = await client.post(["a"], then="redirect")
    assert status == 302
    assert await store.stored_names() == ["a"]
    assert store.commits == 1


async def test_failing_commit_answers_500_and_persists_nothing(store: Store, connect: Any) -> None:
    """A commit that breaks a unique constraint is answered 500, never the handler's 200."""
    client = await connect(build_app(store))
    assert (await client.post(["a"]))[0] == 200
    status, body = await client.post(["b", "a"])
    assert status == 500, body
    assert "session" not in str(body)
    assert await store.stored_names() == ["a"]
    assert store.commits == 1


async def test_response_hooks_run_outside_the_scope(store: Store, connect: Any) -> None:
    """``on_response_prepare`` runs after the scope was left: no finished session is reused."""
    app = build_app(store)
    client = await connect(app)
    assert (await client.post(["a"]))[0] == 200
    assert app[AFTER_RESPONSE] == [NoActiveScopeError]


async def test_stream_commits_when_the_handler_returns(store: Store) -> None:
    """A prepared StreamResponse is written inside the scope, which commits on return."""
    async with TestClient(TestServer(build_app(store))) as client:
        async with client.get("/stream", params={"names": "x,y"}) as response:
            assert response.status == 200
            assert await response.text() == "x\ny\n"
    assert await store.stored_names() == ["x", "y"]
    assert store.commits == 1


async def test_stream_failing_commit_breaks_the_response(store: Store) -> None:
    """A stream whose commit fails ends without its last chunk: never a complete 200."""
    async with running(build_app(store)) as base_url, aiohttp.ClientSession(base_url) as session:
        async with session.post("/items", json={"names": ["y"]}) as response:
            assert response.status == 200
        async with session.get("/stream", params={"names": "x,y"}) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    assert await store.stored_names() == ["y"]


async def test_websocket_has_one_scope_per_connection(store: Store) -> None:
    """Every message of a connection uses its one session, committed when it ends."""
    async with running(build_app(store)) as base_url, aiohttp.ClientSession(base_url) as session:
        sessions = []
        for names in (["a", "b"], ["c"]):
            async with session.ws_connect("/ws") as ws:
                for name in names:
                    await ws.send_str(name)
                    sessions.append((await ws.receive_json(timeout=TIMEOUT))["session"])
        for _ in range(100):
            if store.commits == 2:
                break
            await asyncio.sleep(0.02)
    assert sessions[0] == sessions[1] != sessions[2]
    assert await store.stored_names() == ["a", "b", "c"]
    assert store.commits == 2


class Clock:
    """An app-lifetime object."""

    def __init__(self, session: object) -> None:
        self.session = session


async def test_startup_refuses_a_captive_dependency() -> None:
    """A singleton that captures the request session makes the app's start-up fail."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(object)
    container.clock = providers.Singleton(Clock, container.session)
    app = web.Application()
    setup(app, container)
    runner = web.AppRunner(app)
    try:
        with pytest.raises(CaptiveDependencyError):
            await runner.setup()
    finally:
        await runner.cleanup()
