"""The request cycle on other libraries, each set up the way its own documentation shows.

Every builder returns a zero-argument callable doing one whole request cycle (open the
request's scope, resolve ``Service(RepoA(session), RepoB(session))``, close it) and
returning the ``Service``; an async builder's callable returns an awaitable.  A peer
that cannot run raises ``Unavailable`` with the reason ("not installed", or why the
library has no such cycle); ``run.py`` reports the reason instead of a figure and
never substitutes anything for it.

Peers (same graph, same ``Session`` class, same generator bodies):

dishka          ``@provide`` of the session generator itself, ``provide(RepoA, ...)``
                for the classes, all ``Scope.REQUEST``; ``with container() as
                request: request.get(Service)`` (async: ``async with``/``await``).
wireup          ``@injectable(lifetime="scoped")`` generator factory and classes;
                ``with container.enter_scope() as scope: scope.get(Service)``.
svcs            ``Registry.register_factory`` with the generator (svcs enters it
                and runs its cleanup on close) and factories taking
                ``svcs_container``; ``with svcs.Container(registry) as c:
                c.get(Service)`` (async: ``aget``).
that-depends    ``ContextResource(...).with_config(scope=ContextScopes.REQUEST)``
                and ``Factory``s; ``with container_context(scope=REQUEST):
                Container.service.resolve_sync()`` (async: ``resolve()``).
upstream        dependency-injector's own ``ContextLocalResource`` + ``Factory``:
                ``service()`` then ``session.shutdown()``; and the documented
                ``@inject`` + ``Closing[Provide[...]]`` handler, which shuts the
                resources of the graph down after each call.
FastAPI         ``Depends`` with a ``yield`` session dependency, solved the way
                FastAPI's router does for every request, without HTTP: a
                ``Request`` over a minimal ASGI scope holding FastAPI's two exit
                stacks, ``solve_dependencies`` on the endpoint's ``Dependant``,
                the endpoint called, the stacks closed.  Async only: FastAPI
                solves dependencies in a coroutine, and runs ``def``
                dependencies in its thread pool.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from common import RepoA, RepoB, Service, Session, session_async_generator, session_generator
from dependency_injector import containers as upstream_containers
from dependency_injector import providers as upstream
from dependency_injector.wiring import Closing, Provide, inject

SyncCycle = Callable[[], Service]
AsyncCycle = Callable[[], Awaitable[Service]]

#: peer name -> the distribution whose version goes with its figures
PACKAGES = {
    "dishka": "dishka",
    "wireup": "wireup",
    "svcs": "svcs",
    "that-depends": "that-depends",
    "upstream ContextLocalResource": "dependency-injector",
    "upstream ContextLocalResource + Closing": "dependency-injector",
    "FastAPI Depends": "fastapi",
}


class Unavailable(Exception):
    """This peer cannot run here; the message says why."""


def require(module: str) -> Any:
    try:
        with warnings.catch_warnings():
            # svcs imports its FastAPI integration, which imports Starlette's test
            # client, which warns about httpx: not ours to report in every run.
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as error:
        raise Unavailable("not installed") from error


def version(peer: str) -> str | None:
    try:
        return importlib.metadata.version(PACKAGES[peer])
    except importlib.metadata.PackageNotFoundError:
        return None


# --- dishka ------------------------------------------------------------------------


def dishka_provider(generator: Callable[[], Any]) -> Any:
    dishka = require("dishka")
    provider = dishka.Provider(scope=dishka.Scope.REQUEST)
    provider.provide(generator)  # the generator itself: its return hint names Session
    provider.provide(RepoA)
    provider.provide(RepoB)
    provider.provide(Service)
    return provider


def dishka_sync() -> SyncCycle:
    dishka = require("dishka")
    container = dishka.make_container(dishka_provider(session_generator))

    def cycle() -> Service:
        with container() as request:
            return request.get(Service)

    return cycle


def dishka_async() -> AsyncCycle:
    dishka = require("dishka")
    container = dishka.make_async_container(dishka_provider(session_async_generator))

    async def cycle() -> Service:
        async with container() as request:
            return await request.get(Service)

    return cycle


# --- wireup ------------------------------------------------------------------------


def wireup_container(generator: Callable[[], Any], create: str) -> Any:
    wireup = require("wireup")
    scoped = wireup.injectable(lifetime="scoped")  # marks the object, returns it unchanged
    injectables = [scoped(generator), scoped(RepoA), scoped(RepoB), scoped(Service)]
    return getattr(wireup, create)(injectables=injectables)


def wireup_sync() -> SyncCycle:
    container = wireup_container(session_generator, "create_sync_container")

    def cycle() -> Service:
        with container.enter_scope() as scope:
            return scope.get(Service)

    return cycle


def wireup_async() -> AsyncCycle:
    container = wireup_container(session_async_generator, "create_async_container")

    async def cycle() -> Service:
        async with container.enter_scope() as scope:
            return await scope.get(Service)

    return cycle


# --- svcs --------------------------------------------------------------------------


def svcs_registry(generator: Callable[[], Any]) -> Any:
    svcs = require("svcs")
    registry = svcs.Registry()
    registry.register_factory(Session, generator)  # a generator: svcs cleans it up on close
    registry.register_factory(RepoA, lambda svcs_container: RepoA(svcs_container.get(Session)))
    registry.register_factory(RepoB, lambda svcs_container: RepoB(svcs_container.get(Session)))
    registry.register_factory(
        Service,
        lambda svcs_container: Service(*svcs_container.get(RepoA, RepoB)),
    )
    return registry


def svcs_sync() -> SyncCycle:
    svcs = require("svcs")
    registry = svcs_registry(session_generator)

    def cycle() -> Service:
        with svcs.Container(registry) as container:
            return container.get(Service)

    return cycle


def svcs_async() -> AsyncCycle:
    svcs = require("svcs")
    registry = svcs.Registry()
    registry.register_factory(Session, session_async_generator)

    async def repo_a(svcs_container: Any) -> RepoA:
        return RepoA(await svcs_container.aget(Session))

    async def repo_b(svcs_container: Any) -> RepoB:
        return RepoB(await svcs_container.aget(Session))

    async def service(svcs_container: Any) -> Service:
        return Service(*await svcs_container.aget(RepoA, RepoB))

    registry.register_factory(RepoA, repo_a)
    registry.register_factory(RepoB, repo_b)
    registry.register_factory(Service, service)

    async def cycle() -> Service:
        async with svcs.Container(registry) as container:
            return await container.aget(Service)

    return cycle


# --- that-depends ------------------------------------------------------------------


def that_depends_container(name: str, generator: Callable[[], Any]) -> Any:
    that_depends = require("that_depends")
    providers = that_depends.providers
    session = providers.ContextResource(generator).with_config(
        scope=that_depends.ContextScopes.REQUEST
    )
    repo_a = providers.Factory(RepoA, session.cast)
    repo_b = providers.Factory(RepoB, session.cast)
    # ``class Name(BaseContainer): ...`` spelled with ``type``: that-depends keeps
    # containers by class name, and the sync and async graphs need two names.
    return type(
        name,
        (that_depends.BaseContainer,),
        {
            "session": session,
            "repo_a": repo_a,
            "repo_b": repo_b,
            "service": providers.Factory(Service, repo_a.cast, repo_b.cast),
        },
    )


def that_depends_sync() -> SyncCycle:
    that_depends = require("that_depends")
    container = that_depends_container("SyncRequest", session_generator)
    service = container.service
    request = that_depends.ContextScopes.REQUEST
    container_context = that_depends.container_context

    def cycle() -> Service:
        with container_context(scope=request):
            return service.resolve_sync()

    return cycle


def that_depends_async() -> AsyncCycle:
    that_depends = require("that_depends")
    container = that_depends_container("AsyncRequest", session_async_generator)
    service = container.service
    request = that_depends.ContextScopes.REQUEST
    container_context = that_depends.container_context

    async def cycle() -> Service:
        async with container_context(scope=request):
            return await service.resolve()

    return cycle


# --- upstream dependency-injector --------------------------------------------------


class UpstreamRequest(upstream_containers.DeclarativeContainer):
    session = upstream.ContextLocalResource(session_generator)
    service = upstream.Factory(
        Service, upstream.Factory(RepoA, session), upstream.Factory(RepoB, session)
    )


class UpstreamAsyncRequest(upstream_containers.DeclarativeContainer):
    session = upstream.ContextLocalResource(session_async_generator)
    service = upstream.Factory(
        Service, upstream.Factory(RepoA, session), upstream.Factory(RepoB, session)
    )


@inject
def closing_handler(service: Service = Closing[Provide[UpstreamRequest.service]]) -> Service:
    """A request handler as upstream's docs write one: ``Closing`` shuts the session down."""
    return service


@inject
async def closing_async_handler(
    service: Service = Closing[Provide[UpstreamAsyncRequest.service]],
) -> Service:
    return service


def upstream_shutdown_sync() -> SyncCycle:
    container = UpstreamRequest()
    service = container.service
    session = container.session

    def cycle() -> Service:
        result = service()
        session.shutdown()
        return result

    return cycle


def upstream_shutdown_async() -> AsyncCycle:
    container = UpstreamAsyncRequest()
    service = container.service
    session = container.session

    async def cycle() -> Service:
        result = await service()
        await session.shutdown()
        return result

    return cycle


def upstream_closing_sync() -> SyncCycle:
    container = UpstreamRequest()
    container.wire(modules=[sys.modules[__name__]])
    return closing_handler


def upstream_closing_async() -> AsyncCycle:
    container = UpstreamAsyncRequest()
    container.wire(modules=[sys.modules[__name__]])
    return closing_async_handler


# --- FastAPI -----------------------------------------------------------------------


def fastapi_sync() -> SyncCycle:
    require("fastapi")
    raise Unavailable(
        "FastAPI solves dependencies only in a coroutine (`def` ones run in its thread pool)"
    )


def fastapi_async() -> AsyncCycle:
    require("fastapi")
    import fastapi_peer  # imports FastAPI at its top, as its annotations need

    return fastapi_peer.cycle


SYNC: dict[str, Callable[[], SyncCycle]] = {
    "dishka": dishka_sync,
    "wireup": wireup_sync,
    "svcs": svcs_sync,
    "that-depends": that_depends_sync,
    "upstream ContextLocalResource": upstream_shutdown_sync,
    "upstream ContextLocalResource + Closing": upstream_closing_sync,
    "FastAPI Depends": fastapi_sync,
}

ASYNC: dict[str, Callable[[], AsyncCycle]] = {
    "dishka": dishka_async,
    "wireup": wireup_async,
    "svcs": svcs_async,
    "that-depends": that_depends_async,
    "upstream ContextLocalResource": upstream_shutdown_async,
    "upstream ContextLocalResource + Closing": upstream_closing_async,
    "FastAPI Depends": fastapi_async,
}


def build(builders: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The cycles that can run here, and why each of the others cannot."""
    cycles: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name, builder in builders.items():
        try:
            cycles[name] = builder()
        except Unavailable as reason:
            unavailable[name] = str(reason)
    return cycles, unavailable
