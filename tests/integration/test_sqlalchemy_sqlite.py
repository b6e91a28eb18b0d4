"""One SQLAlchemy session per scope, on real SQLite files: commit, rollback, close."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import ForeignKey, String, create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dependency_injector_scoped import containers, errors, providers


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class AuditEntry(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    message: Mapped[str] = mapped_column(String(200))


class InvalidName(ValueError):
    """Raised by the repository for a name it refuses, after writing."""


def count_rows(path: pathlib.Path, table: str = "users") -> int:
    """Count committed rows through a fresh sqlite3 connection, closed at once."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as connection:
        return connection.execute(f"select count(*) from {table}").fetchone()[0]


# Sync ---------------------------------------------------------------------------


class TrackedSession(Session):
    """A Session that records how it ended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[str] = []

    def commit(self) -> None:
        self.events.append("commit")
        super().commit()

    def rollback(self) -> None:
        self.events.append("rollback")
        super().rollback()

    def close(self) -> None:
        self.events.append("close")
        super().close()


def open_session(engine) -> Iterator[Session]:
    with TrackedSession(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, name: str) -> User:
        user = User(name=name)
        self.session.add(user)
        self.session.flush()
        if name.startswith("!"):
            raise InvalidName(name)
        return user

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(User))


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, user: User, message: str) -> None:
        self.session.add(AuditEntry(user_id=user.id, message=message))
        self.session.flush()


class Container(containers.DeclarativeContainer):
    database_url = providers.Object("sqlite://")
    engine = providers.Singleton(create_engine, database_url)
    session = providers.ScopedResource(open_session, engine)
    users = providers.ScopedFactory(UserRepository, session=session)
    audit = providers.ScopedFactory(AuditRepository, session=session)


@pytest.fixture
def database(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "app.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    return path


@pytest.fixture
def container(database: pathlib.Path) -> Iterator[Container]:
    instance = Container(database_url=providers.Object(f"sqlite:///{database}"))
    try:
        yield instance
    finally:
        instance.engine().dispose()


def test_successful_scope_commits(container: Container, database: pathlib.Path) -> None:
    """A row written in a scope is invisible elsewhere until the scope exits, then committed."""
    with container.scope():
        container.users().add("ann")
        assert container.users().count() == 1
        assert count_rows(database) == 0
    assert count_rows(database) == 1


def test_failing_scope_rolls_back(container: Container, database: pathlib.Path) -> None:
    """An exception in the scope body rolls the session back and propagates unchanged."""
    error = RuntimeError("request failed")

    def request() -> None:
        with container.scope():
            container.users().add("ann")
            raise error

    with pytest.raises(RuntimeError) as caught:
        request()
    assert caught.value is error
    assert count_rows(database) == 0


def test_failing_repository_rolls_back(container: Container, database: pathlib.Path) -> None:
    """An exception raised by a repository after writing rolls back the whole scope."""

    def request() -> None:
        with container.scope():
            container.users().add("ann")
            container.users().add("!bob")

    with pytest.raises(InvalidName, match="!bob"):
        request()
    assert count_rows(database) == 0


def test_database_error_rolls_back(container: Container, database: pathlib.Path) -> None:
    """An IntegrityError from the database propagates and nothing of the scope is committed."""

    def request() -> None:
        with container.scope():
            container.users().add("ann")
            container.users().add("ann")

    with pytest.raises(IntegrityError):
        request()
    assert count_rows(database) == 0


def test_repositories_share_the_session(container: Container) -> None:
    """Both repositories of a scope get the scope's single session."""
    with container.scope():
        users, audit = container.users(), container.audit()
        assert users.session is audit.session is container.session()
        assert isinstance(users.session, TrackedSession)


def test_two_repositories_commit_together(container: Container, database: pathlib.Path) -> None:
    """Writes of two repositories in one scope are committed in one transaction."""
    with container.scope():
        user = container.users().add("ann")
        container.audit().record(user, "created")
    assert count_rows(database, "users") == 1
    assert count_rows(database, "audit") == 1


def test_two_repositories_roll_back_together(container: Container, database: pathlib.Path) -> None:
    """A failure after both repositories wrote rolls back both tables."""

    def request() -> None:
        with container.scope():
            user = container.users().add("ann")
            container.audit().record(user, "created")
            container.users().add("!eve")

    with pytest.raises(InvalidName):
        request()
    assert count_rows(database, "users") == 0
    assert count_rows(database, "audit") == 0


def test_session_is_closed_after_scope(container: Container) -> None:
    """At exit the session is committed, closed, and its connection returned to the pool."""
    with container.scope():
        session = container.session()
        container.users().add("ann")
        assert container.engine().pool.checkedout() == 1
        assert session.events == []
    assert session.events == ["commit", "close"]
    assert container.engine().pool.checkedout() == 0


def test_session_is_rolled_back_and_closed_after_failing_scope(container: Container) -> None:
    """A failing scope rolls back then closes its session, returning the connection."""
    sessions: list[TrackedSession] = []

    def request() -> None:
        with container.scope():
            sessions.append(container.session())
            container.users().add("ann")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        request()
    (session,) = sessions
    assert session.events == ["rollback", "close"]
    assert container.engine().pool.checkedout() == 0


def test_each_scope_has_its_own_session(container: Container, database: pathlib.Path) -> None:
    """Consecutive scopes use different sessions and each commits its own rows."""
    sessions = []
    for name in ("ann", "bob", "eve"):
        with container.scope():
            sessions.append(container.session())
            container.users().add(name)
    assert len({id(session) for session in sessions}) == 3
    assert count_rows(database) == 3


def test_failed_scope_does_not_affect_the_next(
    container: Container, database: pathlib.Path
) -> None:
    """After a rolled-back scope, the next scope commits normally."""
    with pytest.raises(InvalidName), container.scope():
        container.users().add("!ann")
    with container.scope():
        container.users().add("ann")
    assert count_rows(database) == 1


def test_explicit_scope_shutdown_with_error_rolls_back(
    container: Container, database: pathlib.Path
) -> None:
    """scope.init() / shutdown(exc) delivers the error to the generator, which rolls back."""
    opened = container.scope()
    opened.init()
    container.users().add("ann")
    error = RuntimeError("aborted")
    opened.shutdown(exc=error)
    assert count_rows(database) == 0
    opened = container.scope()
    opened.init()
    container.users().add("bob")
    opened.shutdown()
    assert count_rows(database) == 1


def enforce_deferred_foreign_keys(engine) -> None:
    """Enable SQLite foreign keys and add a table whose key is checked at COMMIT."""

    @event.listens_for(engine, "connect")
    def enable(dbapi_connection, _record) -> None:
        dbapi_connection.execute("pragma foreign_keys = on")


DEFERRED_TABLE = (
    "create table if not exists membership (id integer primary key, "
    "user_id integer not null references users(id) deferrable initially deferred)"
)


def test_commit_failure_at_exit_is_raised_as_finalizer_error(
    container: Container, database: pathlib.Path
) -> None:
    """A COMMIT refused at a clean exit raises FinalizerError holding the IntegrityError."""
    enforce_deferred_foreign_keys(container.engine())
    sessions: list[TrackedSession] = []

    def request() -> None:
        with container.scope():
            session = container.session()
            sessions.append(session)
            session.execute(text(DEFERRED_TABLE))
            container.users().add("ann")
            session.execute(text("insert into membership (user_id) values (999)"))

    with pytest.raises(errors.FinalizerError) as caught:
        request()
    (session,) = sessions
    assert caught.value.subgroup(IntegrityError) is not None
    assert session.events == ["commit", "rollback", "close"]
    assert count_rows(database) == 0
    assert container.engine().pool.checkedout() == 0


# Async --------------------------------------------------------------------------


class TrackedAsyncSession(AsyncSession):
    """An AsyncSession that records how it ended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[str] = []

    async def commit(self) -> None:
        self.events.append("commit")
        await super().commit()

    async def rollback(self) -> None:
        self.events.append("rollback")
        await super().rollback()

    async def close(self) -> None:
        self.events.append("close")
        await super().close()


async def open_async_session(engine) -> AsyncIterator[AsyncSession]:
    async with TrackedAsyncSession(engine) as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


class AsyncUserRepository:
    """Uses the scope's session; the scope's lock serialises its statements."""

    def __init__(self, session: AsyncSession, lock: asyncio.Lock) -> None:
        self.session = session
        self.lock = lock

    async def add(self, name: str) -> User:
        async with self.lock:
            user = User(name=name)
            self.session.add(user)
            await self.session.flush()
        if name.startswith("!"):
            raise InvalidName(name)
        return user

    async def count(self) -> int:
        async with self.lock:
            return await self.session.scalar(select(func.count()).select_from(User))


class AsyncAuditRepository:
    def __init__(self, session: AsyncSession, lock: asyncio.Lock) -> None:
        self.session = session
        self.lock = lock

    async def record(self, user: User, message: str) -> None:
        async with self.lock:
            self.session.add(AuditEntry(user_id=user.id, message=message))
            await self.session.flush()


class AsyncContainer(containers.DeclarativeContainer):
    database_url = providers.Object("sqlite+aiosqlite://")
    engine = providers.Singleton(create_async_engine, database_url)
    session = providers.ScopedResource(open_async_session, engine)
    lock = providers.ScopedFactory(asyncio.Lock)
    users = providers.ScopedFactory(AsyncUserRepository, session=session, lock=lock)
    audit = providers.ScopedFactory(AsyncAuditRepository, session=session, lock=lock)


@pytest.fixture
async def async_container(database: pathlib.Path) -> AsyncIterator[AsyncContainer]:
    instance = AsyncContainer(database_url=providers.Object(f"sqlite+aiosqlite:///{database}"))
    try:
        yield instance
    finally:
        await instance.engine().dispose()


async def test_async_successful_scope_commits(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """An async scope's row is invisible to other connections before exit and committed after."""
    async with async_container.scope():
        users = await async_container.users()
        await users.add("ann")
        assert await users.count() == 1
        assert count_rows(database) == 0
    assert count_rows(database) == 1


async def test_async_failing_scope_rolls_back(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """An exception in an async scope body rolls back and propagates unchanged."""
    error = RuntimeError("request failed")

    async def request() -> None:
        async with async_container.scope():
            await (await async_container.users()).add("ann")
            raise error

    with pytest.raises(RuntimeError) as caught:
        await request()
    assert caught.value is error
    assert count_rows(database) == 0


async def test_async_failing_repository_rolls_back(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """An exception from an async repository rolls back everything written in the scope."""

    async def request() -> None:
        async with async_container.scope():
            users = await async_container.users()
            await users.add("ann")
            await users.add("!bob")

    with pytest.raises(InvalidName, match="!bob"):
        await request()
    assert count_rows(database) == 0


async def test_async_database_error_rolls_back(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """An IntegrityError in an async scope propagates and nothing is committed."""

    async def request() -> None:
        async with async_container.scope():
            users = await async_container.users()
            await users.add("ann")
            await users.add("ann")

    with pytest.raises(IntegrityError):
        await request()
    assert count_rows(database) == 0


async def test_async_repositories_share_the_session(async_container: AsyncContainer) -> None:
    """Both async repositories of a scope get its single AsyncSession and lock."""
    async with async_container.scope():
        users, audit = await async_container.users(), await async_container.audit()
        assert users.session is audit.session is await async_container.session()
        assert users.lock is audit.lock is async_container.lock()
        assert isinstance(users.session, TrackedAsyncSession)


async def test_async_two_repositories_commit_together(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """Writes of two async repositories in one scope are committed together."""
    async with async_container.scope():
        user = await (await async_container.users()).add("ann")
        await (await async_container.audit()).record(user, "created")
    assert count_rows(database, "users") == 1
    assert count_rows(database, "audit") == 1


async def test_async_session_is_closed_after_scope(async_container: AsyncContainer) -> None:
    """The AsyncSession is committed and closed at exit, its connection back in the pool."""
    async with async_container.scope():
        session = await async_container.session()
        await (await async_container.users()).add("ann")
        assert async_container.engine().pool.checkedout() == 1
        assert session.events == []
    assert session.events == ["commit", "close"]
    assert async_container.engine().pool.checkedout() == 0


async def test_async_session_is_rolled_back_and_closed_after_failing_scope(
    async_container: AsyncContainer,
) -> None:
    """A failing async scope rolls back then closes its AsyncSession."""
    sessions: list[TrackedAsyncSession] = []

    async def request() -> None:
        async with async_container.scope():
            sessions.append(await async_container.session())
            await (await async_container.users()).add("ann")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await request()
    (session,) = sessions
    assert session.events == ["rollback", "close"]
    assert async_container.engine().pool.checkedout() == 0


async def test_async_commit_failure_at_exit_is_raised_as_finalizer_error(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """An async COMMIT refused at a clean exit raises FinalizerError; nothing is committed."""
    enforce_deferred_foreign_keys(async_container.engine().sync_engine)
    sessions: list[TrackedAsyncSession] = []

    async def request() -> None:
        async with async_container.scope():
            session = await async_container.session()
            sessions.append(session)
            await session.execute(text(DEFERRED_TABLE))
            await (await async_container.users()).add("ann")
            await session.execute(text("insert into membership (user_id) values (999)"))

    with pytest.raises(errors.FinalizerError) as caught:
        await request()
    (session,) = sessions
    assert caught.value.subgroup(IntegrityError) is not None
    assert session.events == ["commit", "rollback", "close"]
    assert count_rows(database) == 0
    assert async_container.engine().pool.checkedout() == 0


async def test_async_gather_resolves_one_session(async_container: AsyncContainer) -> None:
    """Repositories resolved from gathered tasks in one scope share one session."""

    async def resolve() -> tuple[AsyncSession, AsyncSession]:
        await asyncio.sleep(0)
        users, audit = await async_container.users(), await async_container.audit()
        return users.session, audit.session

    async with async_container.scope():
        pairs = await asyncio.wait_for(asyncio.gather(*(resolve() for _ in range(20))), 5)
        sessions = {id(session) for pair in pairs for session in pair}
        assert sessions == {id(await async_container.session())}
    assert pairs[0][0].events == ["commit", "close"]


async def test_async_gather_of_repository_operations_commits_once(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """Gathered writes in one scope use its one session, serialised by the scope's lock."""

    async def create(index: int) -> AsyncSession:
        user = await (await async_container.users()).add(f"user-{index}")
        await (await async_container.audit()).record(user, f"created {index}")
        return await async_container.session()

    async with async_container.scope():
        sessions = await asyncio.wait_for(
            asyncio.gather(*(create(index) for index in range(10))), 10
        )
        assert all(session is sessions[0] for session in sessions)
        assert await (await async_container.users()).count() == 10
        assert count_rows(database) == 0
    assert sessions[0].events == ["commit", "close"]
    assert count_rows(database, "users") == 10
    assert count_rows(database, "audit") == 10


async def test_async_gather_with_one_failure_rolls_back_all(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """When one gathered operation fails, the scope rolls back every operation's write."""

    async def create(name: str) -> None:
        await (await async_container.users()).add(name)

    async def request() -> None:
        async with async_container.scope():
            names = ["ann", "bob", "!eve", "max"]
            await asyncio.wait_for(asyncio.gather(*(create(name) for name in names)), 10)

    with pytest.raises(InvalidName):
        await request()
    assert count_rows(database) == 0


async def test_async_concurrent_scopes_use_separate_sessions(
    async_container: AsyncContainer, database: pathlib.Path
) -> None:
    """Concurrent async scopes each get their own session and commit their own row."""

    async def request(index: int) -> AsyncSession:
        async with async_container.scope():
            await (await async_container.users()).add(f"user-{index}")
            return await async_container.session()

    # SQLite has one writer at a time: run the scopes one after the other,
    # interleaving only their resolution.
    lock = asyncio.Lock()

    async def serialised(index: int) -> AsyncSession:
        async with lock:
            return await request(index)

    sessions = await asyncio.wait_for(
        asyncio.gather(*(serialised(index) for index in range(5))), 10
    )
    assert len({id(session) for session in sessions}) == 5
    assert count_rows(database) == 5
