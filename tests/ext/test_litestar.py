"""Litestar: one scope per request and per WebSocket, committed before the response leaves.

Runs through Litestar's ``TestClient`` and ``AsyncTestClient`` with a sync
SQLAlchemy session on a SQLite file (its commit runs in a worker thread).
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dependency_injector_scoped import containers, get_current_scope, providers
from dependency_injector_scoped.errors import CaptiveDependencyError, ScopeClosedError
from support import require_module

litestar = require_module("litestar")
sqlalchemy = require_module("sqlalchemy")

from litestar import Litestar, Request, get, post, websocket  # noqa: E402
from litestar.background_tasks import BackgroundTask  # noqa: E402
from litestar.connection import WebSocket  # noqa: E402
from litestar.exceptions import HTTPException, NotFoundException  # noqa: E402
from litestar.params import FromQuery, JSONBody  # noqa: E402
from litestar.response import Response, Stream  # noqa: E402
from litestar.testing import AsyncTestClient, TestClient  # noqa: E402
from sqlalchemy import Engine, String, create_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from dependency_injector_scoped.ext.litestar import ErrorResponse, ScopePlugin  # noqa: E402


class Base(DeclarativeBase):
    """Declarative base of the items table."""


class Item(Base):
    """An item; names are unique, so a duplicate breaks the commit."""

    __tablename__ = "litestar_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Repository:
    """Adds names through the request's session."""

    def __init__(self, session: Session) -> None:
        self.session = session


class ItemsApp:
    """A Litestar app whose handlers add items through a request-scoped sync session."""

    def __init__(self, database_path: pathlib.Path) -> None:
        self.database_path = database_path
        self.engine: Engine = create_engine(f"sqlite:///{database_path}")
        Base.metadata.create_all(self.engine)
        self.sessions = 0
        self.commits = 0
        self.rollbacks: list[type[BaseException]] = []
        self.background: list[type[BaseException]] = []
        container = containers.DynamicContainer()
        container.session = providers.ScopedResource(self.open_session)
        container.items = providers.ScopedFactory(Repository, session=container.session)
        container.audit = providers.ScopedFactory(Repository, session=container.session)
        container.connection = providers.ScopedValue("request")
        self.container = container
        self.app = self.build()

    def open_session(self) -> Iterator[Session]:
        """Yield a session: commit it when the scope succeeds, else roll back."""
        with Session(self.engine) as session:
            self.sessions += 1
            session.info["number"] = self.sessions
            try:
                yield session
            except BaseException as error:
                session.rollback()
                self.rollbacks.append(type(error))
                raise
            session.commit()
            self.commits += 1

    def add(self, names: list[str]) -> Repository:
        """Add ``names`` through the ``items`` repository (inserted at the commit)."""
        items: Repository = self.container.items()
        items.session.add_all([Item(name=name) for name in names])
        return items

    def resolve_in_background(self) -> None:
        """A background task: record what resolving the request session raises."""
        try:
            self.container.session()
        except ScopeClosedError as error:
            self.background.append(type(error))

    def build(self) -> Litestar:
        """The app: ``POST /items?then=...`` and ``GET /stream`` and ``/ws``."""
        container = self.container

        @post("/items", status_code=200)
        async def add_items(
            request: Request[Any, Any, Any], data: JSONBody[list[str]]
        ) -> Response[Any]:
            items = self.add(data)
            audit: Repository = container.audit()
            then = request.query_params.get("then")
            if then == "not-found":
                raise NotFoundException("gone")
            if then == "conflict":
                raise HTTPException(status_code=409, detail="conflict")
            if then == "raise":
                raise ValueError("the handler failed")
            current = get_current_scope()
            assert current is not None
            return Response(
                {
                    "session": items.session.info["number"],
                    "shared": items.session is audit.session,
                    "connection": type(container.connection()).__name__,
                    "scope_parent": repr(current.parent),
                },
                background=BackgroundTask(self.resolve_in_background),
            )

        @get("/stream")
        async def stream(names: FromQuery[str]) -> Stream:
            async def chunks() -> AsyncIterator[bytes]:
                for name in names.split(","):
                    self.add([name])
                    yield f"{name}\n".encode()

            return Stream(chunks())

        @websocket("/ws")
        async def socket(socket: WebSocket[Any, Any, Any]) -> None:
            await socket.accept()
            for _ in range(2):
                name = await socket.receive_text()
                items = self.add([name])
                await socket.send_json({"session": items.session.info["number"]})
            await socket.close()

        return Litestar(
            route_handlers=[add_items, stream, socket], plugins=[ScopePlugin(container)]
        )

    def stored_names(self) -> list[str]:
        """The committed names, read through a connection of their own."""
        with contextlib.closing(sqlite3.connect(self.database_path)) as connection:
            rows = connection.execute("select name from litestar_items order by name")
            return [name for (name,) in rows]


@pytest.fixture
def items_app(tmp_path: pathlib.Path) -> Iterator[ItemsApp]:
    """A fresh app on a SQLite file."""
    items_app = ItemsApp(tmp_path / "items.db")
    try:
        yield items_app
    finally:
        items_app.engine.dispose()


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest, items_app: ItemsApp) -> AsyncIterator[Any]:
    """A client for the app, ``TestClient`` or ``AsyncTestClient``, with lifespan; awaitable calls."""
    if request.param == "async":
        async with AsyncTestClient(items_app.app) as async_client:
            yield async_client
        return

    class Awaiting:
        """The sync TestClient behind awaitable ``post``/``get``."""

        def __init__(self, client: TestClient[Litestar]) -> None:
            self.client = client

        async def post(self, *args: Any, **kwargs: Any) -> Any:
            return self.client.post(*args, **kwargs)

        async def get(self, *args: Any, **kwargs: Any) -> Any:
            return self.client.get(*args, **kwargs)

    with TestClient(items_app.app) as sync_client:
        yield Awaiting(sync_client)


async def test_success_commits_one_session_shared_by_two_repositories(
    items_app: ItemsApp, client: Any
) -> None:
    """A 200 commits; both repositories get the request's session; requests differ."""
    first = await client.post("/items", json=["a", "b"])
    second = await client.post("/items", json=["c"])
    assert first.status_code == second.status_code == 200
    assert first.json()["shared"] and second.json()["shared"]
    assert first.json()["connection"] == "Request"
    assert first.json()["scope_parent"] == "None"
    assert first.json()["session"] != second.json()["session"]
    assert items_app.stored_names() == ["a", "b", "c"]
    assert items_app.commits == 2 and items_app.rollbacks == []


@pytest.mark.parametrize(("then", "status"), [("not-found", 404), ("conflict", 409)])
async def test_http_exceptions_roll_back(
    items_app: ItemsApp, client: Any, then: str, status: int
) -> None:
    """``NotFoundException`` and ``HTTPException`` become responses whose status rolls back."""
    response = await client.post("/items", params={"then": then}, json=["a"])
    assert response.status_code == status
    assert items_app.stored_names() == []
    assert items_app.rollbacks == [ErrorResponse]


async def test_unhandled_exception_rolls_back(items_app: ItemsApp, client: Any) -> None:
    """An error is Litestar's 500, which rolls back."""
    response = await client.post("/items", params={"then": "raise"}, json=["a"])
    assert response.status_code == 500
    assert items_app.stored_names() == []
    assert items_app.rollbacks == [ErrorResponse]


async def test_validation_error_opens_no_session(items_app: ItemsApp, client: Any) -> None:
    """A 400 for a bad body: the lazy session is never created, nothing is stored."""
    response = await client.post("/items", json={"not": "a list"})
    assert response.status_code == 400
    assert items_app.sessions == 0 and items_app.stored_names() == []


async def test_failing_commit_answers_500_and_persists_nothing(
    items_app: ItemsApp, client: Any
) -> None:
    """A commit that breaks a unique constraint is answered 500, never the handler's 200."""
    assert (await client.post("/items", json=["a"])).status_code == 200
    response = await client.post("/items", json=["b", "a"])
    assert response.status_code == 500
    assert "session" not in response.text
    assert items_app.stored_names() == ["a"]
    assert items_app.commits == 1


async def test_background_task_sees_the_closed_scope(items_app: ItemsApp, client: Any) -> None:
    """A background task runs after the commit; resolving the session raises ScopeClosedError."""
    assert (await client.post("/items", json=["a"])).status_code == 200
    assert items_app.background == [ScopeClosedError]


async def test_stream_commits_at_its_end(items_app: ItemsApp, client: Any) -> None:
    """A streamed body uses the request's session for every chunk and commits at the end."""
    response = await client.get("/stream", params={"names": "x,y,z"})
    assert response.status_code == 200
    assert response.text == "x\ny\nz\n"
    assert items_app.stored_names() == ["x", "y", "z"]
    assert items_app.sessions == 1 and items_app.commits == 1


def test_websocket_has_one_scope_per_connection(items_app: ItemsApp) -> None:
    """Messages of one connection share its session, committed when the handler returns."""
    with TestClient(items_app.app) as client:
        sessions = []
        for names in (["a", "b"], ["c", "d"]):
            with client.websocket_connect("/ws") as ws:
                for name in names:
                    ws.send_text(name)
                    sessions.append(ws.receive_json()["session"])
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3]
    assert items_app.stored_names() == ["a", "b", "c", "d"]
    assert items_app.commits == 2


class Clock:
    """An app-lifetime object."""

    def __init__(self, session: object) -> None:
        self.session = session


def test_startup_refuses_a_captive_dependency() -> None:
    """A singleton that captures the request session fails the app's start-up."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(object)
    container.clock = providers.Singleton(Clock, container.session)

    @get("/")
    async def index() -> str:
        return "index"

    app = Litestar(route_handlers=[index], plugins=[ScopePlugin(container)])
    with pytest.raises(BaseException) as raised, TestClient(app):
        pass
    assert captive_errors(raised.value)


def captive_errors(error: BaseException) -> list[BaseException]:
    """The CaptiveDependencyErrors in ``error``, walking exception groups."""
    if isinstance(error, CaptiveDependencyError):
        return [error]
    found: list[BaseException] = []
    for inner in getattr(error, "exceptions", ()):
        found.extend(captive_errors(inner))
    return found


def test_module_works_without_starlette() -> None:
    """The Litestar integration imports and serves with starlette made unimportable."""
    program = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "from litestar import Litestar, get\n"
        "from litestar.testing import TestClient\n"
        "from dependency_injector_scoped import containers, providers\n"
        "from dependency_injector_scoped.ext.litestar import ScopePlugin\n"
        "container = containers.DynamicContainer()\n"
        "container.number = providers.ScopedFactory(object)\n"
        "@get('/')\n"
        "async def index() -> str:\n"
        "    container.number()\n"
        "    return 'scoped'\n"
        "app = Litestar(route_handlers=[index], plugins=[ScopePlugin(container)])\n"
        "with TestClient(app) as client:\n"
        "    print(client.get('/').text)\n"
        "assert not any(name.startswith('starlette.') for name in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "scoped"
