"""Static checks of scopes and containers (run by mypy and pyright, not pytest)."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator

from dependency_injector import containers as upstream_containers
from typing_extensions import assert_type

import dependency_injector_scoped
from dependency_injector_scoped import Scope, containers, get_current_scope, providers


class Session:
    """Stands in for a database session."""


def open_session() -> Iterator[Session]:
    yield Session()


class Container(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    request = providers.ScopedValue[str]("request")


class UpstreamContainer(upstream_containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)


def check_container_scope() -> None:
    container = Container()
    assert_type(container.scope(), Scope)
    assert_type(container.scope("request", values={"request": "GET /"}), Scope)
    with container.scope() as scope:
        assert_type(scope, Scope)
        assert_type(container.session(), Session)
        assert_type(container.request(), str)


async def check_async_scope() -> None:
    container = Container()
    async with container.scope("request") as scope:
        assert_type(scope, Scope)
        assert_type(scope.parent, Scope | None)


def check_dynamic_container_scope() -> None:
    container = containers.DynamicContainer()
    assert_type(container.scope(), Scope)


def check_free_function() -> None:
    assert_type(dependency_injector_scoped.scope(UpstreamContainer()), Scope)
    assert_type(dependency_injector_scoped.scope(UpstreamContainer(), "job", values={}), Scope)
    assert_type(get_current_scope(), Scope | None)


def check_explicit_scope() -> None:
    scope = Container().scope()
    assert_type(scope.init(), Awaitable[object] | None)
    assert_type(scope.shutdown(), Awaitable[object] | None)
    assert_type(scope.shutdown(exc=ValueError("failed")), Awaitable[object] | None)
    assert_type(scope.name, str | None)
    assert_type(scope.is_open, bool)
    assert_type(scope.closed, bool)
    assert_type(Container.session in scope, bool)
