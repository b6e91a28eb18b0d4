"""Static checks of the scoped providers' types (run by mypy and pyright, not pytest)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager

from dependency_injector import resources
from typing_extensions import assert_type

from dependency_injector_scoped import providers


class Session:
    """Stands in for a database session."""


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session


def session_generator() -> Iterator[Session]:
    yield Session()


async def session_async_generator() -> AsyncIterator[Session]:
    yield Session()


@contextmanager
def session_context() -> Generator[Session, None, None]:
    yield Session()


@asynccontextmanager
async def session_async_context() -> AsyncGenerator[Session, None]:
    yield Session()


async def open_session() -> Session:
    return Session()


def make_session() -> Session:
    return Session()


class SessionResource(resources.Resource[Session]):
    def init(self) -> Session:
        return Session()

    def shutdown(self, resource: Session | None) -> None:
        pass


class AsyncSessionResource(resources.AsyncResource[Session]):
    async def init(self) -> Session:
        return Session()

    async def shutdown(self, resource: Session | None) -> None:
        pass


def check_scoped_factory() -> None:
    repositories = providers.ScopedFactory(Repository, session=providers.Object(Session()))
    assert_type(repositories, providers.ScopedFactory[Repository])
    assert_type(repositories(), Repository)
    assert_type(repositories.async_(), Awaitable[Repository])
    assert_type(repositories.scope_name, str | None)
    named = providers.ScopedFactory(Repository, Session(), scope="request")
    assert_type(named, providers.ScopedFactory[Repository])


def check_scoped_resource_initializers() -> None:
    assert_type(providers.ScopedResource(session_generator), providers.ScopedResource[Session])
    assert_type(
        providers.ScopedResource(session_async_generator), providers.ScopedResource[Session]
    )
    assert_type(providers.ScopedResource(session_context), providers.ScopedResource[Session])
    assert_type(providers.ScopedResource(session_async_context), providers.ScopedResource[Session])
    assert_type(providers.ScopedResource(SessionResource), providers.ScopedResource[Session])
    assert_type(providers.ScopedResource(AsyncSessionResource), providers.ScopedResource[Session])
    assert_type(providers.ScopedResource(open_session), providers.ScopedResource[Session])
    assert_type(providers.ScopedResource(make_session), providers.ScopedResource[Session])


def check_scoped_resource_calls() -> None:
    sessions = providers.ScopedResource(session_generator, scope="request")
    assert_type(sessions(), Session)
    assert_type(sessions.async_(), Awaitable[Session])
    assert_type(sessions.is_async, bool)
    assert_type(sessions.init(), Awaitable[Session] | None)


def check_scoped_value() -> None:
    by_type = providers.ScopedValue(Session)
    assert_type(by_type, providers.ScopedValue[Session])
    assert_type(by_type(), Session)
    declared = providers.ScopedValue[Session]("session", scope="request")
    assert_type(declared(), Session)


def check_upstream_providers_are_reexported() -> None:
    singleton = providers.Singleton(Session)
    assert_type(singleton, providers.Singleton[Session])
    assert_type(providers.Factory(Repository, session=singleton)(), Repository)
