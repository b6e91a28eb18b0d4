"""The PostgreSQL app of the FastAPI tests, run by uvicorn in a process of its own.

``python -m ext.fastapi_postgres_support STACK URL RECORDS COUNTERS APPLICATION FD``
(with ``tests/`` on the path) serves the app of ``STACK`` (``asyncpg``: ``async
def`` endpoints; ``psycopg``: ``def`` endpoints) on the listening socket
``FD``.  ``GET /stats`` reports what its request sessions did, the pool's
checked-out connections and the event loop's thread.
"""

import asyncio
import contextlib
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.fastapi import Scoped
from dependency_injector_scoped.ext.starlette import ScopeMiddleware

POOL = {"pool_size": 5, "max_overflow": 0, "pool_timeout": 30}
STREAM_CHUNKS = 500
SLEEP_SECONDS = 15


@dataclass
class Tables:
    """The names of a test's tables and the PostgreSQL application name of its engine."""

    records: str
    counters: str
    application: str


@dataclass
class Journal:
    """What the request sessions did: creation threads, and how each one ended."""

    created: list[int] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ended(self, outcome: str, error: BaseException | None = None) -> None:
        """Record how a session ended, and the SQLSTATE (or type) of the error that ended it."""
        self.outcomes.append(outcome)
        if error is not None:
            orig = getattr(error, "orig", None)
            self.errors.append(getattr(orig, "sqlstate", None) or type(error).__name__)


# The two stacks --------------------------------------------------------------------------


async def open_async_session(engine: AsyncEngine, journal: Journal) -> AsyncIterator[AsyncSession]:
    """The request's asyncpg session: commits when the scope succeeds, else rolls back."""
    journal.created.append(threading.get_ident())
    async with AsyncSession(engine) as session:
        try:
            yield session
        except BaseException as error:
            journal.ended("rollback", error)
            await session.rollback()
            raise
        try:
            await session.commit()
        except BaseException as error:
            journal.ended("failed commit", error)
            raise
        journal.ended("commit")


def open_sync_session(engine: Engine, journal: Journal) -> Iterator[Session]:
    """The request's psycopg session: commits when the scope succeeds, else rolls back."""
    journal.created.append(threading.get_ident())
    with Session(engine) as session:
        try:
            yield session
        except BaseException as error:
            journal.ended("rollback", error)
            session.rollback()
            raise
        try:
            session.commit()
        except BaseException as error:
            journal.ended("failed commit", error)
            raise
        journal.ended("commit")


class AsyncRecords:
    """A repository writing one row per call, tagged with its name and the transaction id."""

    def __init__(self, session: AsyncSession, table: str, name: str) -> None:
        self.session = session
        self.table = table
        self.name = name

    async def record(self, request_id: str, name: str | None = None) -> int:
        txid = (await self.session.execute(text("select txid_current()"))).scalar_one()
        await self.session.execute(
            text(
                f"insert into {self.table} (request_id, repository, txid, name) "
                "values (:request_id, :repository, :txid, :name)"
            ),
            {"request_id": request_id, "repository": self.name, "txid": txid, "name": name},
        )
        return int(txid)


class SyncRecords:
    """The same repository on a sync session."""

    def __init__(self, session: Session, table: str, name: str) -> None:
        self.session = session
        self.table = table
        self.name = name

    def record(self, request_id: str, name: str | None = None) -> int:
        txid = self.session.execute(text("select txid_current()")).scalar_one()
        self.session.execute(
            text(
                f"insert into {self.table} (request_id, repository, txid, name) "
                "values (:request_id, :repository, :txid, :name)"
            ),
            {"request_id": request_id, "repository": self.name, "txid": txid, "name": name},
        )
        return int(txid)


def build_container(stack: str, engine: Any, journal: Journal, tables: Tables) -> Any:
    """A session per request, a second session (for the lock regression) and three repositories."""
    container = containers.DynamicContainer()
    opener = open_async_session if stack == "asyncpg" else open_sync_session
    records = AsyncRecords if stack == "asyncpg" else SyncRecords
    container.session = providers.ScopedResource(opener, engine, journal)
    container.other_session = providers.ScopedResource(opener, engine, journal)
    container.first = providers.ScopedFactory(records, container.session, tables.records, "first")
    container.second = providers.ScopedFactory(records, container.session, tables.records, "second")
    container.elsewhere = providers.ScopedFactory(
        records, container.other_session, tables.records, "elsewhere"
    )
    return container


def lock_statements(tables: Tables) -> tuple[Any, Any, Any]:
    """Lock the counter row, bound the wait for a lock, update the counter row."""
    return (
        text(f"select value from {tables.counters} where id = 1 for update"),
        text("set local lock_timeout = '300ms'"),
        text(f"update {tables.counters} set value = value + 1 where id = 1"),
    )


async def chunks() -> AsyncIterator[bytes]:
    """A slow streamed body: about five seconds unless the client leaves."""
    for number in range(STREAM_CHUNKS):
        yield f"chunk {number}\n".encode()
        await asyncio.sleep(0.01)


def async_app(container: Any, tables: Tables, lifespan: Any = None) -> FastAPI:
    """``async def`` endpoints; every repository comes from ``Scoped``."""
    app = FastAPI(lifespan=lifespan)
    First = Annotated[AsyncRecords, Depends(Scoped(container.first))]
    Second = Annotated[AsyncRecords, Depends(Scoped(container.second))]
    Elsewhere = Annotated[AsyncRecords, Depends(Scoped(container.elsewhere))]
    lock, bound_wait, update = lock_statements(tables)

    @app.post("/record/{request_id}")
    async def record(request_id: str, first: First, second: Second) -> dict[str, Any]:
        txids = [await first.record(request_id), await second.record(request_id)]
        return {"txids": txids, "shared": first.session is second.session}

    @app.post("/unique/{request_id}")
    async def unique(request_id: str, name: str, first: First, second: Second) -> None:
        await first.record(request_id, f"{name} first")
        await second.record(request_id, name)

    @app.post("/slow/{request_id}")
    async def slow(request_id: str, first: First) -> None:
        await first.record(request_id)
        await first.session.execute(text(f"select pg_sleep({SLEEP_SECONDS}) -- slow {request_id}"))

    @app.get("/stream/{request_id}")
    async def stream(request_id: str, first: First) -> StreamingResponse:
        await first.record(request_id)
        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/lock/one-session")
    async def lock_one(first: First, second: Second) -> None:
        await first.session.execute(lock)
        await second.session.execute(bound_wait)
        await second.session.execute(update)

    @app.post("/lock/two-sessions")
    async def lock_two(first: First, elsewhere: Elsewhere) -> None:
        await first.session.execute(lock)
        await elsewhere.session.execute(bound_wait)
        await elsewhere.session.execute(update)

    app.add_middleware(ScopeMiddleware, container=container)
    return app


def sync_app(container: Any, tables: Tables, lifespan: Any = None) -> FastAPI:
    """``def`` endpoints (FastAPI's thread pool); every repository comes from ``Scoped``."""
    app = FastAPI(lifespan=lifespan)
    First = Annotated[SyncRecords, Depends(Scoped(container.first))]
    Second = Annotated[SyncRecords, Depends(Scoped(container.second))]
    Elsewhere = Annotated[SyncRecords, Depends(Scoped(container.elsewhere))]
    lock, bound_wait, update = lock_statements(tables)

    # No return annotation: FastAPI would validate the response of a def
    # endpoint in its thread pool while the request still holds its
    # connection; with every pool thread waiting for a connection, that
    # waits until the pool times out.
    @app.post("/record/{request_id}")
    def record(request_id: str, first: First, second: Second):  # type: ignore[no-untyped-def]
        txids = [first.record(request_id), second.record(request_id)]
        return {"txids": txids, "shared": first.session is second.session}

    @app.post("/unique/{request_id}")
    def unique(request_id: str, name: str, first: First, second: Second) -> None:
        first.record(request_id, f"{name} first")
        second.record(request_id, name)

    @app.post("/slow/{request_id}")
    def slow(request_id: str, first: First) -> None:
        first.record(request_id)
        first.session.execute(text(f"select pg_sleep({SLEEP_SECONDS}) -- slow {request_id}"))

    @app.get("/stream/{request_id}")
    def stream(request_id: str, first: First) -> StreamingResponse:
        first.record(request_id)
        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/lock/one-session")
    def lock_one(first: First, second: Second) -> None:
        first.session.execute(lock)
        second.session.execute(bound_wait)
        second.session.execute(update)

    @app.post("/lock/two-sessions")
    def lock_two(first: First, elsewhere: Elsewhere) -> None:
        first.session.execute(lock)
        elsewhere.session.execute(bound_wait)
        elsewhere.session.execute(update)

    app.add_middleware(ScopeMiddleware, container=container)
    return app


def create_app(stack: str, postgres_url: str, tables: Tables) -> FastAPI:
    """The app of ``stack`` on a 5-connection pool, with ``GET /stats``; the engine is disposed at shutdown."""
    rest = postgres_url.split("://", 1)[1]
    journal = Journal()
    engine: Any

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if stack == "asyncpg":
            await engine.dispose()
        else:
            engine.dispose()

    if stack == "asyncpg":
        engine = create_async_engine(
            f"postgresql+asyncpg://{rest}",
            connect_args={"server_settings": {"application_name": tables.application}},
            **POOL,
        )
        pool = engine.sync_engine.pool
        app = async_app(build_container(stack, engine, journal, tables), tables, lifespan)
    else:
        engine = create_engine(
            f"postgresql+psycopg://{rest}",
            connect_args={"application_name": tables.application},
            **POOL,
        )
        pool = engine.pool
        app = sync_app(build_container(stack, engine, journal, tables), tables, lifespan)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            **asdict(journal),
            "checked_out": pool.checkedout(),
            "loop_thread": threading.get_ident(),
        }

    return app


def main(arguments: list[str]) -> None:
    """Serve the app described by ``arguments`` on the inherited listening socket."""
    stack, postgres_url, records, counters, application, fd = arguments
    app = create_app(stack, postgres_url, Tables(records, counters, application))
    listener = socket.socket(fileno=int(fd))
    # A loop starved by 40 busy worker threads can fire the keep-alive timer
    # late, closing a connection just as the client reuses it.
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_keep_alive=60)
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main(sys.argv[1:])
