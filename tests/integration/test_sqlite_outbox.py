"""A failing outbox fails the unit of work: the session rolls back, on a real SQLite file.

The outbox resource is created after the session, so it is finalised first; when its publish
fails, the session's finaliser receives that error and rolls back instead of committing.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import String, create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dependency_injector_scoped import containers, errors, providers


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class PublishError(Exception):
    """The message broker refused the outbox's messages."""


class HandlerError(Exception):
    """The request handler failed after writing."""


def committed_names(path: pathlib.Path) -> list[str]:
    """The names committed to the database, read through a fresh connection."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as connection:
        return [row[0] for row in connection.execute("select name from users order by id")]


class Outbox:
    """Collects messages during the request; they are published when the scope closes."""

    def __init__(self, broker_up: bool) -> None:
        self.broker_up = broker_up
        self.messages: list[str] = []

    def record(self, message: str) -> None:
        self.messages.append(message)

    def publish(self) -> None:
        if not self.broker_up:
            raise PublishError(f"broker down: {len(self.messages)} message(s) not sent")


# Sync session -----------------------------------------------------------------------------


def open_session(engine) -> Iterator[Session]:
    with Session(engine) as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


def open_outbox(session: Session, broker_up: bool) -> Iterator[Outbox]:
    outbox = Outbox(broker_up)
    yield outbox
    outbox.publish()


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, name: str) -> None:
        self.session.add(User(name=name))
        self.session.flush()


class SyncShop(containers.DeclarativeContainer):
    database_url = providers.Object("sqlite://")
    broker_up = providers.Object(True)
    engine = providers.Singleton(create_engine, database_url)
    session = providers.ScopedResource(open_session, engine)
    outbox = providers.ScopedResource(open_outbox, session, broker_up)
    users = providers.ScopedFactory(UserRepository, session)


# Async session ----------------------------------------------------------------------------


async def open_async_session(engine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine) as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


async def open_async_outbox(session: AsyncSession, broker_up: bool) -> AsyncIterator[Outbox]:
    outbox = Outbox(broker_up)
    yield outbox
    outbox.publish()


class AsyncUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, name: str) -> None:
        self.session.add(User(name=name))
        await self.session.flush()


class AsyncShop(containers.DeclarativeContainer):
    database_url = providers.Object("sqlite+aiosqlite://")
    broker_up = providers.Object(True)
    engine = providers.Singleton(create_async_engine, database_url)
    session = providers.ScopedResource(open_async_session, engine)
    outbox = providers.ScopedResource(open_async_outbox, session, broker_up)
    users = providers.ScopedFactory(AsyncUserRepository, session)


# One request, three ways ----------------------------------------------------------------------

MODES = ["sync", "sync session in async with", "async"]


@pytest.fixture
def database(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "shop.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    return path


@contextlib.asynccontextmanager
async def shop(mode: str, database: pathlib.Path, *, broker_up: bool):
    """A container of ``mode`` on ``database``; its engine is disposed afterwards."""
    if mode == "async":
        url = f"sqlite+aiosqlite:///{database}"
        async_shop = AsyncShop(
            database_url=providers.Object(url), broker_up=providers.Object(broker_up)
        )
        try:
            yield async_shop
        finally:
            await async_shop.engine().dispose()
        return
    sync_shop = SyncShop(
        database_url=providers.Object(f"sqlite:///{database}"),
        broker_up=providers.Object(broker_up),
    )
    try:
        yield sync_shop
    finally:
        sync_shop.engine().dispose()


async def handle_request(c, mode: str, *, fails: bool = False) -> None:
    """Write a user, record an outbox message, and fail afterwards if ``fails``."""
    if mode == "sync":
        with c.scope():
            c.users().add("ann")
            c.outbox().record("user ann created")
            if fails:
                raise HandlerError("handler failed after writing")
        return
    async with c.scope():
        if mode == "async":
            await (await c.users.async_()).add("ann")
        else:
            c.users().add("ann")
        (await c.outbox.async_()).record("user ann created")
        if fails:
            raise HandlerError("handler failed after writing")


@pytest.mark.parametrize("mode", MODES)
async def test_unit_of_work_commits_when_the_outbox_publishes(mode, database):
    """The control case: with the broker up, the row written in the scope is committed."""
    async with shop(mode, database, broker_up=True) as c:
        await handle_request(c, mode)
    assert committed_names(database) == ["ann"]


@pytest.mark.parametrize("mode", MODES)
async def test_failing_outbox_rolls_the_session_back(mode, database):
    """When the outbox fails to publish, the scope raises FinalizerError and nothing is committed."""
    async with shop(mode, database, broker_up=False) as c:
        with pytest.raises(errors.FinalizerError) as caught:
            await handle_request(c, mode)
    assert [type(error) for error in caught.value.exceptions] == [PublishError]
    assert committed_names(database) == []


@pytest.mark.parametrize("broker_up", [True, False], ids=["broker up", "broker down"])
@pytest.mark.parametrize("mode", MODES)
async def test_failing_unit_of_work_never_commits(mode, broker_up, database):
    """A handler failing after writing propagates its error, and the row is never committed."""
    async with shop(mode, database, broker_up=broker_up) as c:
        with pytest.raises(HandlerError):
            await handle_request(c, mode, fails=True)
    assert committed_names(database) == []
