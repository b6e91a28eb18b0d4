"""A module of jobs decorated with ``in_scope`` in every order, for ``container.wire()``.

Each job returns the session it was given; ``journal`` records how every
session ended.  ``OUTER_INJECT_WARNINGS`` holds what dependency-injector said
about ``@inject`` written above ``in_scope`` when this module was imported.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from dependency_injector.wiring import Provide, inject

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.jobs import in_scope

_Function = TypeVar("_Function", bound=Callable[..., Any])

_numbers = itertools.count(1)


class Session:
    """A stand-in for a database session: numbered, so a test can tell two apart."""

    def __init__(self) -> None:
        self.number = next(_numbers)


class Service:
    def __init__(self, session: Session) -> None:
        self.session = session


def open_session(journal: list[tuple[str, int, str | None]]) -> Iterator[Session]:
    session = Session()
    try:
        yield session
    except BaseException as error:
        journal.append(("rollback", session.number, type(error).__name__))
        raise
    journal.append(("commit", session.number, None))


class Container(containers.DeclarativeContainer):
    journal = providers.Singleton(list)
    session = providers.ScopedResource(open_session, journal)
    service = providers.ScopedFactory(Service, session=session)


container = Container()


class JobFailed(Exception):
    """Raised by a job on purpose."""


def logged(function: _Function) -> _Function:
    """A caller's own decorator, made with functools.wraps."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await function(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# in_scope above @inject.
@in_scope(container)
@inject
def scope_over_inject(fail: bool = False, service: Service = Provide[Container.service]) -> Session:
    if fail:
        raise JobFailed
    return service.session


# in_scope alone: it makes the function injectable itself.
@in_scope(container)
def scope_alone(fail: bool = False, service: Service = Provide[Container.service]) -> Session:
    if fail:
        raise JobFailed
    return service.session


# A functools.wraps wrapper around in_scope.
@logged
@in_scope(container)
@inject
def wrapped_outside(fail: bool = False, service: Service = Provide[Container.service]) -> Session:
    if fail:
        raise JobFailed
    return service.session


# A functools.wraps wrapper between in_scope and @inject.
@in_scope(container)
@logged
@inject
def wrapped_between(fail: bool = False, service: Service = Provide[Container.service]) -> Session:
    if fail:
        raise JobFailed
    return service.session


# @inject over a functools.wraps wrapper.
@in_scope(container)
@inject
@logged
def wrapped_inside(fail: bool = False, service: Service = Provide[Container.service]) -> Session:
    if fail:
        raise JobFailed
    return service.session


@in_scope(container)
@inject
async def async_scope_over_inject(
    fail: bool = False, service: Service = Provide[Container.service]
) -> Session:
    if fail:
        raise JobFailed
    return service.session


@in_scope(container)
async def async_scope_alone(
    fail: bool = False, service: Service = Provide[Container.service]
) -> Session:
    if fail:
        raise JobFailed
    return service.session


@logged
@in_scope(container)
@inject
async def async_wrapped_outside(
    fail: bool = False, service: Service = Provide[Container.service]
) -> Session:
    if fail:
        raise JobFailed
    return service.session


class Jobs:
    """Jobs as methods: wire() patches methods of a module's classes too."""

    @in_scope(container)
    @inject
    def method(self, fail: bool = False, service: Service = Provide[Container.service]) -> Session:
        if fail:
            raise JobFailed
        return service.session


def bound_method(fail: bool = False) -> Session:
    return Jobs().method(fail)


with warnings.catch_warnings(record=True) as OUTER_INJECT_WARNINGS:
    warnings.simplefilter("always")

    # @inject above in_scope: nothing left to inject, in_scope injects inside the scope.
    @inject
    @in_scope(container)
    def inject_over_scope(
        fail: bool = False, service: Service = Provide[Container.service]
    ) -> Session:
        if fail:
            raise JobFailed
        return service.session

    @inject
    @in_scope(container)
    async def async_inject_over_scope(
        fail: bool = False, service: Service = Provide[Container.service]
    ) -> Session:
        if fail:
            raise JobFailed
        return service.session


# Looked up by name on the module at call time, so a test sees what wire() left there.
SYNC_JOBS = (
    "scope_over_inject",
    "scope_alone",
    "wrapped_outside",
    "wrapped_between",
    "wrapped_inside",
    "bound_method",
    "inject_over_scope",
)
ASYNC_JOBS = (
    "async_scope_over_inject",
    "async_scope_alone",
    "async_wrapped_outside",
    "async_inject_over_scope",
)
