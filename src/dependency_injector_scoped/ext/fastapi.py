"""FastAPI: inject a request's scoped instances with ``Depends``, without wiring.

:func:`Scoped` turns a provider into a FastAPI dependency that resolves it
in the request's scope, opened by
:class:`~dependency_injector_scoped.ext.starlette.ScopeMiddleware`::

    from typing import Annotated

    from fastapi import Depends, FastAPI
    from sqlalchemy.ext.asyncio import AsyncSession

    from dependency_injector_scoped.ext.fastapi import Scoped
    from dependency_injector_scoped.ext.starlette import ScopeMiddleware

    app = FastAPI()
    app.add_middleware(ScopeMiddleware, container=container)


    @app.get("/users/{user_id}")
    async def get_user(
        user_id: int, users: Annotated[UserRepository, Depends(Scoped(Container.users))]
    ) -> dict[str, str]: ...

No ``container.wire()`` and no ``@inject``.  The middleware decides when the
scope commits or rolls back (see :mod:`dependency_injector_scoped.ext.starlette`);
a dependency only resolves providers in it, so every repository and service of
a request shares that request's session.

Which provider is resolved
    ``Scoped(Container.users)`` with a declarative container's class
    attribute resolves the provider of the container instance that opened
    the request's scope (its ``users``), as ``Provide[Container.users]`` does
    once wired; nested ``providers.Container`` attributes are followed.  A
    provider of a container instance (``container.users``) and a provider
    that belongs to no container are resolved as they are.  Overriding the
    container's providers (``container.session.override(...)``) applies.

Where it runs (the thread-pool hop)
    FastAPI calls a dependency that is not a coroutine function in its
    thread pool: one thread round trip per dependency per request.  The
    callable :func:`Scoped` returns is an ``async def``, so FastAPI awaits it
    on the event loop, and then:

    - In an ``async def`` endpoint, the provider is resolved on the event
      loop: an async session is awaited, a sync provider is called directly.
      No thread is involved.
    - In a ``def`` endpoint (FastAPI runs it in its thread pool), a provider
      whose graph needs an await is still awaited on the loop; a sync one
      (a sync SQLAlchemy session, a repository on it) is created in a worker
      thread of the same pool, one round trip, skipped when the instance
      already exists in the scope.  Its creation never runs on the event
      loop's thread, and neither does its finalisation: the middleware closes
      the scope asynchronously, so sync finalisers (the commit) run in a
      worker thread.

    ``@inject`` with ``Depends(Provide[Container.users])`` keeps working,
    after ``container.wire(...)``.  FastAPI sees the ``Provide`` marker as a
    plain callable and calls it in its thread pool on every request, for
    each marker, before ``@inject`` replaces the value; ``Scoped`` avoids
    that round trip.

Overriding in tests
    ``Scoped(provider)`` returns the same callable for the same provider
    while that callable is referenced (a route's ``Depends`` references it),
    so it is the key for ``app.dependency_overrides``::

        app.dependency_overrides[Scoped(Container.users)] = lambda: FakeUsers()

Without the middleware
    Resolving outside any scope raises
    :class:`~dependency_injector_scoped.errors.NoActiveScopeError` naming the
    provider and the middleware to add.  Background tasks run after the
    request's scope closed: a ``Scoped`` dependency is resolved before the
    endpoint runs, so hand background tasks values, not scoped instances.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations of
# a dependency's ``__call__`` at run time to inject the connection.

import inspect
import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

import anyio.to_thread
from dependency_injector import providers as upstream_providers
from starlette.requests import HTTPConnection

from dependency_injector_scoped import Scope as DIScope
from dependency_injector_scoped import get_current_scope
from dependency_injector_scoped._scope import describe_provider, plan_generation
from dependency_injector_scoped.errors import NoActiveScopeError
from dependency_injector_scoped.providers import ScopedResource

__all__ = ["Scoped", "ScopedDependency"]

T = TypeVar("T")

_dependencies: "weakref.WeakValueDictionary[int, ScopedDependency[Any]]" = (
    weakref.WeakValueDictionary()
)
_dependencies_lock = threading.Lock()


class ScopedDependency(Generic[T]):
    """A FastAPI dependency resolving ``provider`` in the request's scope.

    Build it with :func:`Scoped`, which returns one per provider.  Awaited on
    the event loop by FastAPI; see the module documentation for where the
    provider itself is resolved.
    """

    __slots__ = ("__weakref__", "provider")

    def __init__(self, provider: "upstream_providers.Provider[T]") -> None:
        self.provider = provider

    async def __call__(self, connection: HTTPConnection) -> T:
        """Resolve the provider in the current scope for the connection's endpoint."""
        scope = get_current_scope()
        if scope is None:
            raise NoActiveScopeError(
                f"{describe_provider(self.provider)} was injected with Scoped() outside any "
                "open scope: add `app.add_middleware(ScopeMiddleware, container=container)` "
                "(dependency_injector_scoped.ext.starlette) so every request runs in a scope."
            )
        provider: upstream_providers.Provider[T] = _provider_in(scope, self.provider)
        if _runs_in_thread(connection.scope.get("endpoint")) and not _needs_await(provider):
            if provider in scope:
                return provider()
            result: T = await anyio.to_thread.run_sync(provider)
            return result
        return await provider.async_()

    def __repr__(self) -> str:
        return f"Scoped({self.provider!r})"


def Scoped(provider: "upstream_providers.Provider[T]") -> ScopedDependency[T]:
    """Return the FastAPI dependency that resolves ``provider`` in the request's scope.

    Use it as ``Annotated[T, Depends(Scoped(Container.provider))]``.  The same
    provider gives the same dependency while it is referenced, so
    ``app.dependency_overrides[Scoped(Container.provider)]`` overrides it.
    """
    with _dependencies_lock:
        dependency = _dependencies.get(id(provider))
        # The dependency holds its provider, so the id is not reused while
        # the entry exists.
        if dependency is None or dependency.provider is not provider:
            dependency = ScopedDependency(provider)
            _dependencies[id(provider)] = dependency
        return dependency


# Class attributes to the instance's providers -----------------------------------------

_instance_maps: "weakref.WeakKeyDictionary[Any, tuple[int, dict[int, Any]]]" = (
    weakref.WeakKeyDictionary()
)


def _provider_in(scope: DIScope, provider: Any) -> Any:
    """The provider the scope's containers serve for ``provider`` (a class attribute maps)."""
    current: DIScope | None = scope
    while current is not None:
        container = current.container
        if container is not None and getattr(container, "declarative_parent", None) is not None:
            found = _instance_map(container).get(id(provider))
            if found is not None:
                return found
        current = current.parent
    return provider


def _instance_map(container: Any) -> dict[int, Any]:
    """``id(class attribute) -> instance provider`` for a declarative container's instance."""
    generation = plan_generation()
    cached = _instance_maps.get(container)
    if cached is not None and cached[0] == generation:
        return cached[1]
    mapping: dict[int, Any] = {}
    _map_providers(container.declarative_parent, container, mapping)
    _instance_maps[container] = (generation, mapping)
    return mapping


def _map_providers(source: Any, target: Any, mapping: dict[int, Any]) -> None:
    for name, declared in source.providers.items():
        actual = target.providers.get(name)
        if actual is None:
            continue
        if actual is not declared:
            # The class's providers live as long as the class: ids stay unique.
            mapping[id(declared)] = actual
        if isinstance(declared, upstream_providers.Container) and isinstance(
            actual, upstream_providers.Container
        ):
            _map_providers(declared.container, actual.container, mapping)


# Where to resolve ------------------------------------------------------------------------


def _runs_in_thread(endpoint: Callable[..., Any] | None) -> bool:
    """Whether FastAPI runs ``endpoint`` in its thread pool (it is not a coroutine function)."""
    if endpoint is None:
        return False
    while isinstance(endpoint, partial):
        endpoint = endpoint.func
    unwrapped = inspect.unwrap(endpoint)
    for candidate in (endpoint, unwrapped):
        if inspect.iscoroutinefunction(candidate) or inspect.iscoroutinefunction(
            getattr(candidate, "__call__", None)  # noqa: B004
        ):
            return False
    return True


def _needs_await(provider: Any) -> bool:
    """Whether resolving ``provider`` needs the event loop (its graph has an async provider)."""
    if provider.is_async_mode_enabled():
        return True
    if provider.is_async_mode_disabled():
        return False
    return any(
        related.is_async_mode_enabled()
        or (isinstance(related, ScopedResource) and related.is_async)
        for related in provider.traverse()
    )
