"""A sync SQLAlchemy session behind ScopeMiddleware, over ASGI and over a real uvicorn server.

Its commit runs in a worker thread, off the event loop, and a commit that
fails never reaches the client as a complete 200, whatever middleware sits
inside ScopeMiddleware.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.starlette import ScopeMiddleware

from .helpers import ByteChunks, pass_through, run_lifespan, serving

CLIENT_TIMEOUT = 10.0


class Base(DeclarativeBase):
    """Declarative base of the items table."""


class Item(Base):
    """An item; names are unique, so a duplicate breaks the commit."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class ItemsApp:
    """A FastAPI app whose request session is a sync SQLAlchemy session on a SQLite file.

    ``commit_threads`` records the thread each commit ran in; ``inner``
    names the middleware put inside ScopeMiddleware.
    """

    def __init__(self, database_path: pathlib.Path, inner: str = "none") -> None:
        self.database_path = database_path
        self.commit_threads: list[int] = []
        engine = create_engine(f"sqlite:///{database_path}")
        Base.metadata.create_all(engine)

        container = containers.DynamicContainer()
        container.engine = providers.Object(engine)
        container.session = providers.ScopedResource(self.open_session, container.engine)

        app = FastAPI()

        @app.post("/items")
        async def add_items(names: list[str]) -> dict[str, int]:
            session: Session = container.session()
            session.add_all([Item(name=name) for name in names])
            return {"loop_thread": threading.get_ident()}

        if inner == "base-http":
            app.middleware("http")(pass_through)
        elif inner == "byte-chunks":
            app.add_middleware(ByteChunks)
        app.add_middleware(ScopeMiddleware, container=container)
        self.app = app
        self.engine = engine

    def open_session(self, engine: Engine) -> Iterator[Session]:
        """Yield a session: commit it when the scope succeeds, else roll back."""
        with Session(engine) as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            self.commit_threads.append(threading.get_ident())
            session.commit()

    def stored_names(self) -> list[str]:
        """The committed item names, read through a connection of their own."""
        with contextlib.closing(sqlite3.connect(self.database_path)) as connection:
            return [name for (name,) in connection.execute("select name from items order by name")]


@contextlib.asynccontextmanager
async def connect(app: FastAPI, transport: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app``: in-process over ASGI, or over HTTP to a uvicorn server on 127.0.0.1."""
    if transport == "asgi":
        asgi = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with (
            run_lifespan(app),
            httpx.AsyncClient(transport=asgi, base_url="http://items.test") as client,
        ):
            yield client
        return
    pytest.importorskip("uvicorn")
    with serving(app) as base_url:
        # No keep-alive: uvicorn closes a connection whose app raised.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=CLIENT_TIMEOUT, limits=limits
        ) as client:
            yield client


async def outcome(client: httpx.AsyncClient, names: list[str]) -> str:
    """POST ``names``: "complete <status>", or "incomplete" when the body is cut short."""
    try:
        response = await client.post("/items", json=names)
    except httpx.RemoteProtocolError:
        return "incomplete"
    declared = response.headers.get("content-length")
    if declared is not None and len(response.content) < int(declared):
        return "incomplete"
    return f"complete {response.status_code}"


@pytest.fixture(params=["asgi", "uvicorn"])
def transport(request: pytest.FixtureRequest) -> str:
    """How the client reaches the app: in-process ASGI or a real server."""
    return str(request.param)


@pytest.fixture
def make_items(tmp_path: pathlib.Path) -> Iterator[Callable[[str], ItemsApp]]:
    """Build an ItemsApp on a SQLite file in ``tmp_path``; its engine is disposed afterwards."""
    built: list[ItemsApp] = []

    def make(inner: str) -> ItemsApp:
        built.append(ItemsApp(tmp_path / f"items-{len(built)}.db", inner))
        return built[-1]

    yield make
    for items in built:
        items.engine.dispose()


@pytest.mark.parametrize("inner", ["none", "base-http"])
async def test_sync_commit_runs_off_the_event_loop_thread(
    make_items: Callable[[str], ItemsApp], transport: str, inner: str
) -> None:
    """A sync session's commit runs in a worker thread, not the loop's, and is done before the 200."""
    items = make_items(inner)
    async with connect(items.app, transport) as client:
        response = await client.post("/items", json=["first"])
        assert response.status_code == 200
        assert items.stored_names() == ["first"]
    loop_thread = response.json()["loop_thread"]
    assert len(items.commit_threads) == 1
    assert items.commit_threads[0] != loop_thread


@pytest.mark.parametrize(
    ("inner", "expected"),
    [("none", "complete 500"), ("base-http", "complete 500"), ("byte-chunks", "incomplete")],
)
async def test_failing_commit_never_reaches_the_client_as_a_complete_200(
    make_items: Callable[[str], ItemsApp], transport: str, inner: str, expected: str
) -> None:
    """A commit broken by a unique name answers 500, or an incomplete body, and stores nothing of it."""
    items = make_items(inner)
    async with connect(items.app, transport) as client:
        assert await outcome(client, ["taken"]) == "complete 200"
        assert await outcome(client, ["fresh", "taken"]) == expected
    assert items.stored_names() == ["taken"]
