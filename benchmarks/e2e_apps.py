"""The end-to-end benchmark's FastAPI apps: one per system, the same routes on each.

``create_app()`` builds the app of the system named by ``E2E_SYSTEM`` (served by
``e2e.py`` as ``uvicorn --factory e2e_apps:create_app``):

scoped      this package: ``ScopeMiddleware`` and ``Depends(Scoped(Container.repo))``.
inject      this package: ``ScopeMiddleware``, ``container.wire(...)``, ``@inject`` and
            ``Depends(Provide[Container.repo])``.
fastapi     FastAPI's own ``Depends`` on a ``yield`` session dependency: ``async def``
            dependencies for the ``async def`` route, ``def`` ones for the ``def`` route
            (FastAPI's SQL tutorial writes ``def get_session()`` with ``yield``).
dishka      ``make_async_container``, ``setup_dishka``, ``FromDishka`` and ``@inject``,
            the sessions and repositories provided with ``Scope.REQUEST``, each session
            from its generator, as dishka's FastAPI documentation shows.
middleware  hand-written: a plain ASGI middleware opens the route's session, puts it
            in ``request.state`` and closes it when the app returns; the endpoints build
            the repositories themselves.

Routes, the same on every system:

``GET /async``  an ``async def`` endpoint resolving two repositories on one
                ``AsyncSession`` (aiosqlite).
``GET /sync``   a ``def`` endpoint (FastAPI runs it in its thread pool) resolving two
                repositories on one ``Session`` (pysqlite).
``GET /_stats`` sessions opened and closed so far, for the checks before timing.

Each answers ``{"kind", "session", "same"}``: the session's serial number and whether
both repositories got the same session.  Sessions are created, shared, and closed once
per request; with ``E2E_QUERY=1`` the first repository also runs ``SELECT 1`` on it (the
session then checks a connection out of the engine's pool and returns it on close).
The SQLite file is ``E2E_DATABASE``.

No ``from __future__ import annotations``: FastAPI and dishka read the endpoints'
annotations at run time.
"""

import os
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from dependency_injector.wiring import Provide, inject
from fastapi import Depends, FastAPI, Request
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.fastapi import Scoped
from dependency_injector_scoped.ext.starlette import ScopeMiddleware

SYSTEMS = ("scoped", "inject", "fastapi", "dishka", "middleware")
#: the systems of this package; the others are what they are compared with
OURS = ("scoped", "inject")

DATABASE = os.environ.get("E2E_DATABASE", "e2e.db")
QUERY = os.environ.get("E2E_QUERY", "0") == "1"
SELECT_ONE = text("SELECT 1")

async_engine = create_async_engine(f"sqlite+aiosqlite:///{DATABASE}")
sync_engine = create_engine(f"sqlite:///{DATABASE}")


# --- what every system builds -------------------------------------------------------


class Counters:
    """Sessions opened and closed in this server process."""

    opened = 0
    closed = 0


def new_async_session() -> AsyncSession:
    session = AsyncSession(async_engine)
    Counters.opened += 1
    session.info["serial"] = Counters.opened
    return session


def new_sync_session() -> Session:
    session = Session(sync_engine)
    Counters.opened += 1
    session.info["serial"] = Counters.opened
    return session


async def open_async_session() -> AsyncIterator[AsyncSession]:
    """One request's ``AsyncSession``: created, shared, closed."""
    session = new_async_session()
    try:
        yield session
    finally:
        await session.close()
        Counters.closed += 1


def open_sync_session() -> Iterator[Session]:
    """One request's ``Session``: created, shared, closed."""
    session = new_sync_session()
    try:
        yield session
    finally:
        session.close()
        Counters.closed += 1


class AsyncRepoA:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ping(self) -> None:
        await self.session.execute(SELECT_ONE)


class AsyncRepoB:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class SyncRepoA:
    def __init__(self, session: Session) -> None:
        self.session = session

    def ping(self) -> None:
        self.session.execute(SELECT_ONE)


class SyncRepoB:
    def __init__(self, session: Session) -> None:
        self.session = session


async def answer_async(a: AsyncRepoA, b: AsyncRepoB) -> dict[str, Any]:
    if QUERY:
        await a.ping()
    return {"kind": "async", "session": a.session.info["serial"], "same": a.session is b.session}


def answer_sync(a: SyncRepoA, b: SyncRepoB) -> dict[str, Any]:
    if QUERY:
        a.ping()
    return {"kind": "sync", "session": a.session.info["serial"], "same": a.session is b.session}


def new_app(system: str, **options: Any) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, **options)

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        return {"system": system, "opened": Counters.opened, "closed": Counters.closed}

    return app


# --- this package -------------------------------------------------------------------


class Container(containers.DeclarativeContainer):
    async_session = providers.ScopedResource(open_async_session)
    sync_session = providers.ScopedResource(open_sync_session)
    async_repo_a = providers.ScopedFactory(AsyncRepoA, session=async_session)
    async_repo_b = providers.ScopedFactory(AsyncRepoB, session=async_session)
    sync_repo_a = providers.ScopedFactory(SyncRepoA, session=sync_session)
    sync_repo_b = providers.ScopedFactory(SyncRepoB, session=sync_session)


def scoped_app() -> FastAPI:
    app = new_app("scoped")
    app.add_middleware(ScopeMiddleware, container=Container())

    @app.get("/async")
    async def async_endpoint(
        a: Annotated[AsyncRepoA, Depends(Scoped(Container.async_repo_a))],
        b: Annotated[AsyncRepoB, Depends(Scoped(Container.async_repo_b))],
    ):
        return await answer_async(a, b)

    @app.get("/sync")
    def sync_endpoint(
        a: Annotated[SyncRepoA, Depends(Scoped(Container.sync_repo_a))],
        b: Annotated[SyncRepoB, Depends(Scoped(Container.sync_repo_b))],
    ):
        return answer_sync(a, b)

    return app


# ``container.wire()`` finds the functions ``@inject`` decorated among a module's
# attributes, so these two live at module level.
@inject
async def inject_async_endpoint(
    a: AsyncRepoA = Depends(Provide[Container.async_repo_a]),
    b: AsyncRepoB = Depends(Provide[Container.async_repo_b]),
):
    return await answer_async(a, b)


@inject
def inject_sync_endpoint(
    a: SyncRepoA = Depends(Provide[Container.sync_repo_a]),
    b: SyncRepoB = Depends(Provide[Container.sync_repo_b]),
):
    return answer_sync(a, b)


def inject_app() -> FastAPI:
    container = Container()
    container.wire(modules=[__name__])
    app = new_app("inject")
    app.add_middleware(ScopeMiddleware, container=container)
    app.add_api_route("/async", inject_async_endpoint, methods=["GET"])
    app.add_api_route("/sync", inject_sync_endpoint, methods=["GET"])
    return app


# --- FastAPI's own Depends ------------------------------------------------------------


async def fastapi_async_repo_a(
    session: Annotated[AsyncSession, Depends(open_async_session)],
) -> AsyncRepoA:
    return AsyncRepoA(session)


async def fastapi_async_repo_b(
    session: Annotated[AsyncSession, Depends(open_async_session)],
) -> AsyncRepoB:
    return AsyncRepoB(session)


def fastapi_sync_repo_a(session: Annotated[Session, Depends(open_sync_session)]) -> SyncRepoA:
    return SyncRepoA(session)


def fastapi_sync_repo_b(session: Annotated[Session, Depends(open_sync_session)]) -> SyncRepoB:
    return SyncRepoB(session)


def fastapi_app() -> FastAPI:
    app = new_app("fastapi")

    @app.get("/async")
    async def async_endpoint(
        a: Annotated[AsyncRepoA, Depends(fastapi_async_repo_a)],
        b: Annotated[AsyncRepoB, Depends(fastapi_async_repo_b)],
    ):
        return await answer_async(a, b)

    @app.get("/sync")
    def sync_endpoint(
        a: Annotated[SyncRepoA, Depends(fastapi_sync_repo_a)],
        b: Annotated[SyncRepoB, Depends(fastapi_sync_repo_b)],
    ):
        return answer_sync(a, b)

    return app


# --- dishka -------------------------------------------------------------------------


def dishka_app() -> FastAPI:
    from contextlib import asynccontextmanager

    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.fastapi import FastapiProvider, FromDishka, setup_dishka
    from dishka.integrations.fastapi import inject as dishka_inject

    provider = Provider(scope=Scope.REQUEST)
    provider.provide(open_async_session)
    provider.provide(open_sync_session)
    provider.provide(AsyncRepoA)
    provider.provide(AsyncRepoB)
    provider.provide(SyncRepoA)
    provider.provide(SyncRepoB)
    container = make_async_container(provider, FastapiProvider())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.dishka_container.close()

    app = new_app("dishka", lifespan=lifespan)

    @app.get("/async")
    @dishka_inject
    async def async_endpoint(a: FromDishka[AsyncRepoA], b: FromDishka[AsyncRepoB]):
        return await answer_async(a, b)

    @app.get("/sync")
    @dishka_inject
    def sync_endpoint(a: FromDishka[SyncRepoA], b: FromDishka[SyncRepoB]):
        return answer_sync(a, b)

    setup_dishka(container, app)
    return app


# --- hand-written -------------------------------------------------------------------


class SessionMiddleware:
    """Opens the route's session before the app runs and closes it when the app returns."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/async":
            session = new_async_session()
            scope.setdefault("state", {})["session"] = session
            try:
                await self.app(scope, receive, send)
            finally:
                await session.close()
                Counters.closed += 1
        elif path == "/sync":
            sync_session = new_sync_session()
            scope.setdefault("state", {})["session"] = sync_session
            try:
                await self.app(scope, receive, send)
            finally:
                sync_session.close()
                Counters.closed += 1
        else:
            await self.app(scope, receive, send)


def middleware_app() -> FastAPI:
    app = new_app("middleware")
    app.add_middleware(SessionMiddleware)

    @app.get("/async")
    async def async_endpoint(request: Request):
        session = request.state.session
        return await answer_async(AsyncRepoA(session), AsyncRepoB(session))

    @app.get("/sync")
    def sync_endpoint(request: Request):
        session = request.state.session
        return answer_sync(SyncRepoA(session), SyncRepoB(session))

    return app


BUILDERS = {
    "scoped": scoped_app,
    "inject": inject_app,
    "fastapi": fastapi_app,
    "dishka": dishka_app,
    "middleware": middleware_app,
}


def create_app() -> FastAPI:
    """The app of the system named by ``E2E_SYSTEM``."""
    system = os.environ.get("E2E_SYSTEM", "")
    if system not in BUILDERS:
        raise ValueError(f"E2E_SYSTEM={system!r}: choose one of {', '.join(SYSTEMS)}")
    return BUILDERS[system]()
