"""Static checks of the FastAPI integration (run by mypy and pyright, not pytest)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from starlette.requests import HTTPConnection
from typing_extensions import assert_type

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.fastapi import Scoped, ScopedDependency


class Session:
    """Stands in for a database session."""


class AsyncSession:
    """Stands in for an async database session."""


class Repository:
    """Stands in for a repository."""

    def __init__(self, session: Session) -> None:
        self.session = session


def open_session() -> Iterator[Session]:
    yield Session()


async def open_async_session() -> AsyncIterator[AsyncSession]:
    yield AsyncSession()


class Container(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    async_session = providers.ScopedResource(open_async_session)
    repository = providers.ScopedFactory(Repository, session)


async def check_scoped(connection: HTTPConnection) -> None:
    assert_type(Scoped(Container.session), ScopedDependency[Session])
    assert_type(Scoped(Container.async_session), ScopedDependency[AsyncSession])
    assert_type(Scoped(Container.repository), ScopedDependency[Repository])
    assert_type(await Scoped(Container.async_session)(connection), AsyncSession)
    assert_type(Scoped(Container.repository).provider, providers.Provider[Repository])
