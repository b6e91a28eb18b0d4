"""@inject, Provide, Provider and Closing with scoped providers."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Iterator

import pytest
from dependency_injector.wiring import Closing, Provide, Provider, inject

from dependency_injector_scoped import containers, errors, providers

EVENTS: list[str] = []


class Session:
    def __init__(self, connection: object) -> None:
        self.connection = connection
        self.closed = False


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session


def open_connection():
    EVENTS.append("open connection")
    yield "connection"
    EVENTS.append("close connection")


def open_session(connection: object):
    session = Session(connection)
    EVENTS.append("open session")
    try:
        yield session
    finally:
        session.closed = True
        EVENTS.append("close session")


async def open_async_connection():
    EVENTS.append("open connection")
    yield "connection"
    EVENTS.append("close connection")


async def open_async_session(connection: object):
    session = Session(connection)
    EVENTS.append("open session")
    try:
        yield session
    finally:
        session.closed = True
        EVENTS.append("close session")


class Audit(containers.DeclarativeContainer):
    session = providers.Dependency(instance_of=Session)
    log = providers.ScopedFactory(Repository, session=session)


class Container(containers.DeclarativeContainer):
    connection = providers.Resource(open_connection)
    session = providers.ScopedResource(open_session, connection)
    users = providers.ScopedFactory(Repository, session=session)
    audit = providers.Container(Audit, session=session)


class Report:
    def __init__(self, session: Session) -> None:
        self.session = session


async def build_report(session: Session) -> Report:
    EVENTS.append("build report")
    await asyncio.sleep(0.01)
    return Report(session)


class AsyncContainer(containers.DeclarativeContainer):
    connection = providers.Resource(open_async_connection)
    session = providers.ScopedResource(open_async_session, connection)
    users = providers.ScopedFactory(Repository, session=session)
    report = providers.ScopedFactory(build_report, session=session)


# Functions wired by the fixtures ---------------------------------------------


@inject
def get_users(users: Repository = Provide[Container.users]) -> Repository:
    return users


@inject
def get_users_by_name(users: Repository = Provide["users"]) -> Repository:
    return users


@inject
def get_users_and_session(
    users: Repository = Provide[Container.users],
    session: Session = Provide[Container.session],
) -> tuple[Repository, Session]:
    return users, session


@inject
def get_users_provider(users=Provider[Container.users]):
    return users


@inject
def get_users_closing(users: Repository = Closing[Provide[Container.users]]) -> Repository:
    return users


@inject
def get_session_closing(session: Session = Closing[Provide[Container.session]]) -> Session:
    return session


@inject
def get_audit_log(log: Repository = Provide[Container.audit.log]) -> Repository:
    return log


@inject
async def get_users_async(users: Repository = Provide[AsyncContainer.users]) -> Repository:
    await asyncio.sleep(0)
    return users


@inject
async def get_users_by_name_async(users: Repository = Provide["users"]) -> Repository:
    await asyncio.sleep(0)
    return users


@inject
async def get_report(report: Report = Provide[AsyncContainer.report]) -> Report:
    return report


@inject
async def get_users_closing_async(
    users: Repository = Closing[Provide[AsyncContainer.users]],
) -> Repository:
    await asyncio.sleep(0)
    return users


@pytest.fixture
def container() -> Iterator[Container]:
    EVENTS.clear()
    instance = Container()
    instance.wire(modules=[sys.modules[__name__]])
    try:
        yield instance
    finally:
        instance.unwire()
        instance.shutdown_resources()


@pytest.fixture
async def async_container():
    EVENTS.clear()
    instance = AsyncContainer()
    instance.wire(modules=[sys.modules[__name__]])
    try:
        yield instance
    finally:
        instance.unwire()
        result = instance.shutdown_resources()
        if result is not None:
            await result


# Sync functions --------------------------------------------------------------


def test_inject_gives_the_scope_instance(container: Container) -> None:
    """Provide[Container.users] injects the instance the container resolves in the scope."""
    with container.scope():
        injected = get_users()
        assert injected is container.users()
        assert get_users() is injected


def test_inject_gives_a_new_instance_per_scope(container: Container) -> None:
    """Each scope injects its own instance."""
    with container.scope():
        first = get_users()
    with container.scope():
        second = get_users()
    assert first is not second
    assert first.session.closed
    assert second.session.closed


def test_inject_by_string_id(container: Container) -> None:
    """Provide['users'] resolves the wired container's scoped provider."""
    with container.scope():
        assert get_users_by_name() is container.users()


def test_inject_shares_the_session_between_markers(container: Container) -> None:
    """Two markers in one call share the scope's session."""
    with container.scope():
        users, session = get_users_and_session()
        assert users.session is session is container.session()


def test_inject_outside_scope_raises(container: Container) -> None:
    """An injected scoped provider outside any scope raises NoActiveScopeError naming it."""
    with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
        get_users()


def test_explicit_argument_wins_over_injection(container: Container) -> None:
    """Passing the argument by keyword bypasses the scoped provider, even outside a scope."""
    repository = Repository(Session(None))
    assert get_users(users=repository) is repository


def test_provider_marker_gives_the_scoped_provider(container: Container) -> None:
    """Provider[Container.users] injects the provider, callable inside a scope."""
    provider = get_users_provider()
    assert provider is container.users
    with container.scope():
        assert provider() is container.users()


def test_closing_leaves_the_scoped_session_open(container: Container) -> None:
    """Closing[Provide[users]] does not finalise the scoped session: the scope does, on exit."""
    with container.scope():
        users = get_users_closing()
        assert not users.session.closed
        assert "close session" not in EVENTS
        assert container.session() is users.session
        assert container.users() is users
    assert users.session.closed
    assert EVENTS.count("close session") == 1


def test_closing_shuts_down_the_upstream_resource(container: Container) -> None:
    """Closing still shuts down an upstream Resource reached through the scoped graph."""
    with container.scope():
        get_users_closing()
        assert EVENTS == ["open connection", "open session", "close connection"]
        assert not container.connection.initialized
    assert EVENTS == ["open connection", "open session", "close connection", "close session"]


def test_closing_twice_in_one_scope_keeps_one_session(container: Container) -> None:
    """Two Closing calls in one scope inject the same scoped session, opened once."""
    with container.scope():
        first = get_users_closing()
        second = get_users_closing()
        assert first is second
    assert EVENTS.count("open session") == 1
    assert EVENTS.count("close session") == 1


def test_closing_on_the_scoped_resource_itself(container: Container) -> None:
    """Closing[Provide[session]] on the ScopedResource leaves it to the scope."""
    with container.scope():
        session = get_session_closing()
        assert not session.closed
        assert container.session() is session
    assert session.closed
    assert EVENTS.count("close session") == 1


def test_inject_from_nested_container(container: Container) -> None:
    """Provide[Container.audit.log] injects the nested container's scoped instance of this scope."""
    with container.scope():
        log = get_audit_log()
        assert log is container.audit.log()
        assert log.session is container.session()
    with container.scope():
        assert get_audit_log() is not log


# Async functions ------------------------------------------------------------


async def test_async_inject_gives_the_scope_instance(async_container: AsyncContainer) -> None:
    """An async @inject function gets the instance the container resolves in the scope."""
    async with async_container.scope():
        injected = await get_users_async()
        assert injected is await async_container.users()
        assert injected.session is await async_container.session()


async def test_async_inject_by_string_id(async_container: AsyncContainer) -> None:
    """Provide['users'] in an async function resolves the wired container's scoped provider."""
    async with async_container.scope():
        assert await get_users_by_name_async() is await async_container.users()


async def test_async_inject_from_gathered_tasks_shares_one_instance(
    async_container: AsyncContainer,
) -> None:
    """Gathered @inject calls in one scope all get the same instance."""
    async with async_container.scope():
        results = await asyncio.wait_for(asyncio.gather(*(get_users_async() for _ in range(10))), 5)
        assert all(result is results[0] for result in results)
        assert results[0] is await async_container.users()
    assert EVENTS.count("open session") == 1


async def test_async_inject_new_instance_per_scope(async_container: AsyncContainer) -> None:
    """Each async scope injects its own session, closed at its exit."""
    async with async_container.scope():
        first = await get_users_async()
    async with async_container.scope():
        second = await get_users_async()
    assert first is not second
    assert first.session.closed
    assert second.session.closed


async def test_async_inject_outside_scope_raises(async_container: AsyncContainer) -> None:
    """An async @inject function outside any scope raises NoActiveScopeError."""
    with pytest.raises(errors.NoActiveScopeError):
        await get_users_async()


async def test_async_closing_leaves_the_scoped_session_open(
    async_container: AsyncContainer,
) -> None:
    """Closing in an async function leaves the scoped session to its scope."""
    async with async_container.scope():
        users = await get_users_closing_async()
        assert not users.session.closed
        assert await async_container.users() is users
    assert users.session.closed
    assert EVENTS.count("close session") == 1


async def test_async_closing_shuts_down_the_upstream_resource(
    async_container: AsyncContainer,
) -> None:
    """Closing in an async function shuts down the upstream async Resource of the graph."""
    async with async_container.scope():
        await get_users_closing_async()
        assert EVENTS == ["open connection", "open session", "close connection"]
    assert EVENTS[-1] == "close session"


async def test_async_inject_of_coroutine_factory_creates_once(
    async_container: AsyncContainer,
) -> None:
    """Gathered @inject calls of a ScopedFactory built by a coroutine await one shared creation."""
    async with async_container.scope():
        reports = await asyncio.wait_for(asyncio.gather(*(get_report() for _ in range(10))), 5)
        assert all(report is reports[0] for report in reports)
        assert reports[0].session is await async_container.session()
        assert await async_container.report() is reports[0]
    assert EVENTS.count("build report") == 1


async def test_sync_function_in_async_scope_gets_an_awaitable(
    async_container: AsyncContainer,
) -> None:
    """A sync @inject function in `async with` gets an awaitable of the scope's instance.

    A sync function cannot await, so, as with dependency-injector's own async
    providers, the injection is the provider's result: an awaitable before and
    after the instance exists, both resolving to the one instance of the scope.
    """
    async with async_container.scope():
        before = get_users_by_name()
        assert inspect.isawaitable(before)
        created = await asyncio.wait_for(before, 5)
        assert isinstance(created, Repository)
        after = get_users_by_name()
        assert inspect.isawaitable(after)
        assert await after is created
        assert await async_container.users() is created
        assert await get_users_by_name_async() is created
    assert EVENTS.count("open session") == 1
