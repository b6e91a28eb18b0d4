"""taskiq jobs in ``in_scope``: one async SQLAlchemy session per job execution.

The jobs are sent with ``.kiq()`` to taskiq's ``InMemoryBroker``, whose
receiver runs them in this process as a worker would; this module is wired
with ``container.wire()``.  Rows are read back through a separate ``sqlite3``
connection.
"""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import sys
from collections.abc import AsyncIterator

import pytest
from dependency_injector.wiring import Provide, inject
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.jobs import in_scope
from support import require_module

taskiq = require_module("taskiq")

TIMEOUT = 10


async def open_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine) as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


class Orders:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, number: int) -> None:
        await self.session.execute(
            text("insert into orders (number) values (:number)"), {"number": number}
        )


class Container(containers.DeclarativeContainer):
    engine = providers.Dependency(instance_of=AsyncEngine)
    session = providers.ScopedResource(open_session, engine)
    orders = providers.ScopedFactory(Orders, session=session)


container = Container()
broker = taskiq.InMemoryBroker()


class JobFailed(Exception):
    """Raised by a job on purpose."""


@broker.task
@in_scope(container)
@inject
async def place_order(
    number: int,
    fail: bool = False,
    orders: Orders = Provide[Container.orders],
    session: AsyncSession = Provide[Container.session],
) -> int:
    """Insert an order and return its number; the repository shares the job's session."""
    assert orders.session is session
    await orders.add(number)
    await asyncio.sleep(0)
    if fail:
        raise JobFailed(f"order {number} failed")
    return number


@pytest.fixture
async def database(tmp_path: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    """A SQLite file with an orders table, the broker started and this module wired."""
    path = tmp_path / "orders.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table orders (number integer primary key)")
    connection.close()
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    container.engine.override(providers.Object(engine))
    container.wire(modules=[sys.modules[__name__]])
    await broker.startup()
    try:
        yield path
    finally:
        await broker.shutdown()
        container.unwire()
        container.engine.reset_override()
        await engine.dispose()


def committed(path: pathlib.Path) -> list[int]:
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("select number from orders order by 1")]
    finally:
        connection.close()


async def test_job_commits_its_session(database: pathlib.Path) -> None:
    """A job that returns commits; the result comes back through the broker."""
    task = await place_order.kiq(1)
    result = await task.wait_result(timeout=TIMEOUT)
    assert not result.is_err, result.error
    assert result.return_value == 1
    assert committed(database) == [1]


async def test_failing_job_rolls_back(database: pathlib.Path) -> None:
    """A job that raises rolls back; the broker reports the job's error."""
    task = await place_order.kiq(2, fail=True)
    result = await task.wait_result(timeout=TIMEOUT)
    assert result.is_err
    assert isinstance(result.error, JobFailed)
    assert committed(database) == []


async def test_concurrent_jobs_each_get_their_own_session(database: pathlib.Path) -> None:
    """Jobs running at the same time get one session each; failures roll back only their own."""
    tasks = [await place_order.kiq(number, fail=number % 4 == 0) for number in range(1, 21)]
    results = await asyncio.wait_for(
        asyncio.gather(*(task.wait_result(timeout=TIMEOUT) for task in tasks)), TIMEOUT
    )
    errors = [result.error for result in results if result.is_err]
    assert len(errors) == 5 and all(isinstance(error, JobFailed) for error in errors)
    assert [result.return_value for result in results if not result.is_err] == [
        number for number in range(1, 21) if number % 4
    ]
    assert committed(database) == [number for number in range(1, 21) if number % 4]
