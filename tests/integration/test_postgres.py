"""One SQLAlchemy session per scope on a real PostgreSQL server.

Every test uses a table of its own (unique name), dropped at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from dependency_injector_scoped import containers, providers

pytestmark = pytest.mark.postgres

TIMEOUT = 20


class RequestFailed(Exception):
    """Raised by a request body on purpose."""


def sqlalchemy_url(postgres_url: str, driver: str) -> str:
    scheme, rest = postgres_url.split("://", 1)
    assert scheme in ("postgresql", "postgres"), postgres_url
    return f"postgresql+{driver}://{rest}"


@pytest.fixture
def table(postgres_url: str) -> Iterator[str]:
    """A fresh table `(id serial, name text unique, counter int)`, dropped afterwards."""
    name = f"dis_it_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            f"create table {name} (id serial primary key, name text unique not null, "
            "counter integer not null default 0)"
        )
    try:
        yield name
    finally:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"drop table if exists {name}")


async def committed_names(postgres_url: str, table: str) -> list[str]:
    """Names committed in `table`, read through a separate connection."""
    connection = await psycopg.AsyncConnection.connect(
        postgres_url, autocommit=True, connect_timeout=5
    )
    async with connection:
        cursor = await connection.execute(f"select name from {table} order by name")
        return [row[0] for row in await cursor.fetchall()]


async def open_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine) as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


class Repository:
    def __init__(self, session: AsyncSession, table: str) -> None:
        self.session = session
        self.table = table

    async def insert(self, name: str) -> None:
        await self.session.execute(
            text(f"insert into {self.table} (name) values (:name)"), {"name": name}
        )

    async def count(self) -> int:
        return await self.session.scalar(text(f"select count(*) from {self.table}"))

    async def lock(self, name: str, *, nowait: bool = False) -> int:
        suffix = " nowait" if nowait else ""
        return await self.session.scalar(
            text(f"select counter from {self.table} where name = :name for update{suffix}"),
            {"name": name},
        )

    async def increment(self, name: str) -> None:
        await self.session.execute(
            text(f"update {self.table} set counter = counter + 1 where name = :name"),
            {"name": name},
        )


class Container(containers.DeclarativeContainer):
    engine = providers.Dependency(instance_of=AsyncEngine)
    table = providers.Dependency(instance_of=str)
    session = providers.ScopedResource(open_session, engine)
    repository = providers.ScopedFactory(Repository, session=session, table=table)


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        sqlalchemy_url(postgres_url, "asyncpg"),
        pool_size=5,
        max_overflow=0,
        pool_timeout=10,
        connect_args={"timeout": 5},
    )
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def container(engine: AsyncEngine, table: str) -> Container:
    return Container(engine=providers.Object(engine), table=providers.Object(table))


async def insert_in_scope(
    container: Container, *names: str, error: BaseException | None = None
) -> None:
    """One request: insert `names` in a scope, then raise `error` when given."""
    async with container.scope():
        repository = await container.repository()
        for name in names:
            await repository.insert(name)
        if error is not None:
            raise error


# (1) Commit and rollback -------------------------------------------------------


async def test_scope_commits_on_exit(container: Container, postgres_url: str, table: str) -> None:
    """A row inserted in a scope is invisible elsewhere before exit and committed after."""
    async with container.scope():
        repository = await container.repository()
        await repository.insert("ann")
        assert await repository.count() == 1
        assert await committed_names(postgres_url, table) == []
    assert await committed_names(postgres_url, table) == ["ann"]


async def test_failing_scope_rolls_back(
    container: Container, postgres_url: str, table: str
) -> None:
    """An exception in the scope rolls back its insert and propagates unchanged."""
    error = RequestFailed("boom")
    with pytest.raises(RequestFailed) as caught:
        await insert_in_scope(container, "ann", error=error)
    assert caught.value is error
    assert await committed_names(postgres_url, table) == []


async def test_commit_and_rollback_across_scopes(
    container: Container, engine: AsyncEngine, postgres_url: str, table: str
) -> None:
    """Successive scopes commit or roll back independently; later scopes see committed rows."""
    async with container.scope():
        await (await container.repository()).insert("ann")
    with pytest.raises(RequestFailed):
        await insert_in_scope(container, "bob", error=RequestFailed())
    with pytest.raises(DBAPIError):
        await insert_in_scope(container, "eve", "ann")  # "ann" violates the unique key
    async with container.scope():
        repository = await container.repository()
        assert await repository.count() == 1
        await repository.insert("max")
    assert await committed_names(postgres_url, table) == ["ann", "max"]
    assert engine.pool.checkedout() == 0


def test_sync_psycopg_session_per_scope(postgres_url: str, table: str) -> None:
    """A sync scope with a psycopg Session commits on exit and rolls back on error."""

    def open_sync_session(engine):
        with Session(engine) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    class SyncContainer(containers.DeclarativeContainer):
        engine = providers.Singleton(create_engine, sqlalchemy_url(postgres_url, "psycopg"))
        session = providers.ScopedResource(open_sync_session, engine)

    container = SyncContainer()
    statement = text(f"insert into {table} (name) values (:name)")
    try:
        with container.scope():
            container.session().execute(statement, {"name": "ann"})

        def failing_request() -> None:
            with container.scope():
                container.session().execute(statement, {"name": "bob"})
                raise RequestFailed

        with pytest.raises(RequestFailed):
            failing_request()
        assert container.engine().pool.checkedout() == 0
    finally:
        container.engine().dispose()
    assert asyncio.run(committed_names(postgres_url, table)) == ["ann"]


# (2) Row locks -------------------------------------------------------------------


async def test_nowait_sees_the_row_lock_of_another_scope(
    container: Container, postgres_url: str, table: str
) -> None:
    """While a scope holds `FOR UPDATE`, another scope's `NOWAIT` fails with 55P03."""
    await insert_in_scope(container, "row")
    locked, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with container.scope():
            repository = await container.repository()
            await repository.lock("row")
            locked.set()
            await release.wait()
            await repository.increment("row")

    async def request() -> None:
        async with container.scope():
            repository = await container.repository()
            await repository.insert("contender")
            await repository.lock("row", nowait=True)

    async def contender() -> DBAPIError:
        await locked.wait()
        with pytest.raises(DBAPIError) as caught:
            await request()
        return caught.value

    holding = asyncio.create_task(holder())
    try:
        error = await asyncio.wait_for(contender(), TIMEOUT)
    finally:
        release.set()
        await asyncio.wait_for(holding, TIMEOUT)
    assert getattr(error.orig, "sqlstate", None) == "55P03"
    assert await committed_names(postgres_url, table) == ["row"]

    async with container.scope():
        assert await (await container.repository()).lock("row", nowait=True) == 1


async def test_lock_timeout_sees_the_row_lock_of_another_scope(container: Container) -> None:
    """A scope with `lock_timeout` set fails with 55P03 while another scope holds the row lock."""
    await insert_in_scope(container, "row")
    locked, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with container.scope():
            await (await container.repository()).lock("row")
            locked.set()
            await release.wait()

    async def request() -> None:
        async with container.scope():
            session = await container.session()
            await session.execute(text("set local lock_timeout = '50ms'"))
            await (await container.repository()).lock("row")

    async def contender() -> DBAPIError:
        await locked.wait()
        with pytest.raises(DBAPIError) as caught:
            await request()
        return caught.value

    holding = asyncio.create_task(holder())
    try:
        error = await asyncio.wait_for(contender(), TIMEOUT)
    finally:
        release.set()
        await asyncio.wait_for(holding, TIMEOUT)
    assert getattr(error.orig, "sqlstate", None) == "55P03"


async def wait_for_lock_waiter(postgres_url: str, table: str) -> None:
    """Return once a backend waits on a lock for a statement on `table`."""
    connection = await psycopg.AsyncConnection.connect(
        postgres_url, autocommit=True, connect_timeout=5
    )
    async with connection:
        while True:
            cursor = await connection.execute(
                "select count(*) from pg_stat_activity "
                "where wait_event_type = 'Lock' and query like %s and pid <> pg_backend_pid()",
                (f"%{table}%for update%",),
            )
            (waiting,) = await cursor.fetchone()
            if waiting:
                return
            await asyncio.sleep(0.02)


async def test_second_scope_waits_for_the_first_to_commit(
    container: Container, engine: AsyncEngine, postgres_url: str, table: str
) -> None:
    """A second scope waits on the row lock, then proceeds with the first scope's commit."""
    await insert_in_scope(container, "row")
    locked, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with container.scope():
            repository = await container.repository()
            await repository.lock("row")
            locked.set()
            await release.wait()
            await repository.increment("row")
            order.append("first increments")
        order.append("first committed")

    async def second() -> int:
        await locked.wait()
        async with container.scope():
            session = await container.session()
            await session.execute(text("set local lock_timeout = '15s'"))
            repository = await container.repository()
            assert repository.session is session
            seen = await repository.lock("row")
            order.append("second locked")
            await repository.increment("row")
        return seen

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    try:
        await asyncio.wait_for(wait_for_lock_waiter(postgres_url, table), TIMEOUT)
        assert not second_task.done()
        assert order == []
    finally:
        release.set()
        results = await asyncio.wait_for(
            asyncio.gather(first_task, second_task, return_exceptions=True), TIMEOUT
        )
    assert results[0] is None
    assert results[1] == 1, results[1]
    # The server releases the lock at COMMIT, possibly before the first scope
    # has finished closing its session: only the increment is ordered.
    assert order.index("first increments") < order.index("second locked")
    assert "first committed" in order
    async with container.scope():
        assert await (await container.repository()).lock("row", nowait=True) == 2
    assert engine.pool.checkedout() == 0


# (3) and (4) Pool exhaustion ---------------------------------------------------


def track_peak_checkouts(engine: AsyncEngine) -> dict[str, int]:
    counts = {"current": 0, "peak": 0}

    def checkout(*_: object) -> None:
        counts["current"] += 1
        counts["peak"] = max(counts["peak"], counts["current"])

    def checkin(*_: object) -> None:
        counts["current"] -= 1

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    event.listen(engine.sync_engine.pool, "checkin", checkin)
    return counts


async def test_many_concurrent_scopes_share_a_small_pool(
    container: Container, engine: AsyncEngine, postgres_url: str, table: str
) -> None:
    """200 concurrent request scopes on a pool of 5 all complete and return every connection."""
    counts = track_peak_checkouts(engine)

    async def request(index: int) -> AsyncSession:
        async with container.scope():
            repository = await container.repository()
            await repository.count()
            await repository.insert(f"request-{index:03d}")
            session = await container.session()
            assert repository.session is session
            return session

    sessions = await asyncio.wait_for(
        asyncio.gather(*(request(index) for index in range(200))), TIMEOUT
    )
    assert len({id(session) for session in sessions}) == 200
    assert engine.pool.checkedout() == 0
    assert counts["peak"] == 5
    assert counts["current"] == 0
    names = await committed_names(postgres_url, table)
    assert len(names) == 200
    assert names == [f"request-{index:03d}" for index in range(200)]


async def test_failing_half_commits_only_the_successful_half(
    container: Container, engine: AsyncEngine, postgres_url: str, table: str
) -> None:
    """With every other of 200 scopes failing, only the other half commits; nothing leaks."""
    counts = track_peak_checkouts(engine)

    async def request(index: int) -> None:
        async with container.scope():
            repository = await container.repository()
            await repository.count()
            await repository.insert(f"request-{index:03d}")
            if index % 2:
                raise RequestFailed(index)

    results = await asyncio.wait_for(
        asyncio.gather(*(request(index) for index in range(200)), return_exceptions=True), TIMEOUT
    )
    failures = [result for result in results if result is not None]
    assert len(failures) == 100
    assert all(isinstance(failure, RequestFailed) for failure in failures)
    assert sorted(failure.args[0] for failure in failures) == list(range(1, 200, 2))
    assert engine.pool.checkedout() == 0
    assert counts["current"] == 0
    names = await committed_names(postgres_url, table)
    assert names == [f"request-{index:03d}" for index in range(0, 200, 2)]

    async with container.scope():
        assert await (await container.repository()).count() == 100


# Cancellation ------------------------------------------------------------------


async def test_cancelled_scopes_roll_back_and_return_connections(
    container: Container, engine: AsyncEngine, postgres_url: str, table: str
) -> None:
    """Scopes cancelled during a query roll back and give their connections back."""
    started = 0
    all_started = asyncio.Event()

    async def request(index: int) -> None:
        nonlocal started
        async with container.scope():
            repository = await container.repository()
            await repository.insert(f"request-{index}")
            started += 1
            if started == 5:
                all_started.set()
            await (await container.session()).execute(text("select pg_sleep(30)"))

    tasks = [asyncio.create_task(request(index)) for index in range(5)]
    await asyncio.wait_for(all_started.wait(), TIMEOUT)
    for task in tasks:
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    assert all(isinstance(result, asyncio.CancelledError) for result in results), results
    assert engine.pool.checkedout() == 0
    assert await committed_names(postgres_url, table) == []

    async with container.scope():
        await (await container.repository()).insert("after")
    assert await committed_names(postgres_url, table) == ["after"]
