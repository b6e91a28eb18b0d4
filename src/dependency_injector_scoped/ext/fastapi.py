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
      whose graph needs an await is still awaited on the loop, and the sync
      ones (a sync SQLAlchemy session, the repositories on it) are created in
      a worker thread of the same pool, never on the event loop's thread.
      The first of the endpoint's ``Scoped`` dependencies that FastAPI
      resolves creates, in that one round trip, the sync providers of every
      ``Scoped`` dependency its parameters declare after it (those of its
      other dependencies' parameters too), in the order FastAPI resolves
      them; the next ones find their instances in the scope and return them
      without a thread.  (If a dependency FastAPI resolves in between raises,
      those created ahead are finalised with the scope, as the rest are.)
      While ``app.dependency_overrides`` holds anything, each is created
      when FastAPI asks for it instead, so an overridden one is never
      created.  Finalisation never runs on the loop's thread either: the
      middleware closes the scope asynchronously, so sync finalisers (the
      commit) run in a worker thread, one more round trip.

    Where the endpoint runs and which ``Scoped`` dependencies it declares are
    found once per endpoint.

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

What a request costs
    FastAPI solves every ``Depends`` of an endpoint on every request, and
    each costs some tens of microseconds of its own besides what the
    dependency does.  Where it reads well, give an endpoint one ``Scoped``
    service whose provider injects the repositories it uses, rather than one
    ``Depends`` per repository: they share the request's session either way.
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
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
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

    __slots__ = ("__weakref__", "_resolution", "provider")

    def __init__(self, provider: "upstream_providers.Provider[T]") -> None:
        self.provider = provider
        self._resolution: _Resolution | None = None

    async def __call__(self, connection: HTTPConnection) -> T:
        """Resolve the provider in the current scope for the connection's endpoint."""
        scope = get_current_scope()
        if scope is None:
            raise NoActiveScopeError(
                f"{describe_provider(self.provider)} was injected with Scoped() outside any "
                "open scope: add `app.add_middleware(ScopeMiddleware, container=container)` "
                "(dependency_injector_scoped.ext.starlette) so every request runs in a scope."
            )
        resolution = self._resolve_in(scope)
        provider: upstream_providers.Provider[T] = resolution.provider
        if (
            resolution.needs_await
            # A provider that turned asynchronous since the resolution was cached.
            or provider.is_async_mode_enabled()
            or not _endpoint_plan(connection.scope.get("endpoint")).in_thread
        ):
            return await provider.async_()
        if provider in scope:
            return provider()
        result: T = await anyio.to_thread.run_sync(
            _create_together, provider, self._created_with(scope, connection)
        )
        return result

    def __repr__(self) -> str:
        return f"Scoped({self.provider!r})"

    def _resolve_in(self, scope: DIScope) -> "_Resolution":
        """The provider ``scope`` serves for ``self.provider``, and whether resolving it needs an await."""
        container = scope.container
        generation = plan_generation()
        cached = self._resolution
        if (
            cached is not None
            and cached.generation == generation
            and scope.parent is None
            and cached.container is not None
            and cached.container() is container
        ):
            return cached
        provider = _provider_in(scope, self.provider)
        if cached is not None and cached.provider is provider and cached.generation == generation:
            needs_await = cached.needs_await
        else:
            needs_await = _needs_await(provider)
        resolution = _Resolution(provider, needs_await, generation, container)
        if scope.parent is None and container is not None:
            # The cache is keyed by the container alone: only when no outer
            # scope's containers take part in the lookup.
            self._resolution = resolution
        return resolution

    def _created_with(self, scope: DIScope, connection: HTTPConnection) -> list[Any]:
        """The sync providers of the endpoint's ``Scoped`` dependencies FastAPI resolves after this one."""
        for owner in (connection.scope.get("app"), connection.scope.get("route")):
            if getattr(owner, "dependency_overrides", None) or getattr(
                getattr(owner, "dependency_overrides_provider", None), "dependency_overrides", None
            ):
                # An overridden dependency is never called: do not create it.
                return []
        dependencies = _endpoint_plan(connection.scope.get("endpoint")).dependencies
        try:
            # Those before this one were resolved already.
            start = dependencies.index(self) + 1
        except ValueError:
            # Not a parameter's (a route's or router's dependency): it comes first.
            start = 0
        created = []
        for dependency in dependencies[start:]:
            resolution = dependency._resolve_in(scope)
            if not resolution.needs_await and resolution.provider not in scope:
                created.append(resolution.provider)
        return created


class _Resolution:
    """What a ``Scoped`` dependency resolves in the scopes of one container, for one plan generation."""

    __slots__ = ("container", "generation", "needs_await", "provider")

    def __init__(self, provider: Any, needs_await: bool, generation: int, container: Any) -> None:
        self.provider = provider
        self.needs_await = needs_await
        self.generation = generation
        self.container = weakref.ref(container) if container is not None else None


def _create_together(provider: Any, others: list[Any]) -> Any:
    """In a worker thread: create ``provider``, then ``others``, and return the first."""
    result = provider()
    for other in others:
        other()
    return result


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


class _EndpointPlan:
    """How FastAPI runs an endpoint and which ``Scoped`` dependencies its parameters declare."""

    __slots__ = ("dependencies", "in_thread")

    def __init__(self, endpoint: Callable[..., Any] | None) -> None:
        self.in_thread = _runs_in_thread(endpoint)
        # Only a def endpoint's dependencies are created together.
        self.dependencies = _scoped_dependencies(endpoint) if self.in_thread else ()


_endpoint_plans: "weakref.WeakKeyDictionary[Any, _EndpointPlan]" = weakref.WeakKeyDictionary()


def _endpoint_plan(endpoint: Callable[..., Any] | None) -> _EndpointPlan:
    """The endpoint's plan, made once per endpoint."""
    try:
        plan = _endpoint_plans.get(endpoint)
    except TypeError:  # None, or neither hashable nor weakly referenceable: not cached
        return _EndpointPlan(endpoint)
    if plan is None:
        plan = _endpoint_plans[endpoint] = _EndpointPlan(endpoint)
    return plan


def _scoped_dependencies(endpoint: Callable[..., Any] | None) -> tuple[ScopedDependency[Any], ...]:
    """The ``Scoped`` dependencies of ``endpoint``'s parameters, in the order FastAPI resolves them."""
    if endpoint is None:
        return ()
    try:
        dependant = get_dependant(path="", call=endpoint)
    except Exception:
        # FastAPI accepted the endpoint with its route; if its signature
        # cannot be read alone, its dependencies are created one at a time.
        return ()
    found: list[ScopedDependency[Any]] = []
    _collect_scoped(dependant, found)
    return tuple(found)


def _collect_scoped(dependant: Dependant, found: list[ScopedDependency[Any]]) -> None:
    # FastAPI resolves a dependency's own dependencies before it.
    for dependency in dependant.dependencies:
        _collect_scoped(dependency, found)
        if isinstance(dependency.call, ScopedDependency) and dependency.call not in found:
            found.append(dependency.call)


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
