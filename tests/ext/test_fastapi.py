"""FastAPI-native injection (``Scoped``) and ScopeMiddleware's keep-alive behaviour.

SQLAlchemy sessions on SQLite files, in-process over ASGI and over a real
uvicorn server on 127.0.0.1.
"""

import gc
import pathlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import pytest
from dependency_injector.wiring import Provide, inject

from dependency_injector_scoped import containers, errors, providers
from support import require_module

fastapi = require_module("fastapi")
httpx = require_module("httpx")
require_module("uvicorn")
require_module("aiosqlite")

from fastapi import Depends, FastAPI, HTTPException, Request  # noqa: E402
from sqlalchemy import Engine, String, create_engine, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from dependency_injector_scoped.ext.fastapi import Scoped, ScopedDependency  # noqa: E402
from dependency_injector_scoped.ext.starlette import ScopeMiddleware  # noqa: E402

from .fastapi_support import asgi_client, http_client, serving  # noqa: E402

Journal = list[tuple[str, int]]

#: set by the numbered_round_trips fixture while a worker thread runs
current_round_trip = threading.local()


class Base(DeclarativeBase):
    """Declarative base of the items table."""


class Item(Base):
    """An item; names are unique, so a duplicate breaks the commit."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


def open_sync_session(engine: Engine, journal: Journal) -> Iterator[Session]:
    """A sync session: records the thread of its creation and of its commit or rollback."""
    journal.append(("create", threading.get_ident()))
    with Session(engine) as session:
        try:
            yield session
        except BaseException:
            journal.append(("rollback", threading.get_ident()))
            session.rollback()
            raise
        journal.append(("commit", threading.get_ident()))
        session.commit()


async def open_async_session(engine: AsyncEngine, journal: Journal) -> AsyncIterator[AsyncSession]:
    """An async session: records the thread of its creation and of its commit or rollback."""
    journal.append(("create", threading.get_ident()))
    async with AsyncSession(engine) as session:
        try:
            yield session
        except BaseException:
            journal.append(("rollback", threading.get_ident()))
            await session.rollback()
            raise
        journal.append(("commit", threading.get_ident()))
        await session.commit()


class Items:
    """A repository of items on the request's session; records the thread that built it."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.thread = threading.get_ident()
        self.round_trip = getattr(current_round_trip, "number", None)

    def add(self, *names: str) -> None:
        self.session.add_all([Item(name=name) for name in names])


class Audit(Items):
    """A second repository on the same session."""


class SyncContainer(containers.DeclarativeContainer):
    """A sync session per request and two repositories on it."""

    engine = providers.Dependency(instance_of=Engine)
    journal = providers.Dependency(instance_of=list)
    session = providers.ScopedResource(open_sync_session, engine, journal)
    items = providers.ScopedFactory(Items, session)
    audit = providers.ScopedFactory(Audit, session)


class AsyncContainer(containers.DeclarativeContainer):
    """An async session per request, two repositories on it, and a sync service."""

    engine = providers.Dependency(instance_of=AsyncEngine)
    journal = providers.Dependency(instance_of=list)
    session = providers.ScopedResource(open_async_session, engine, journal)
    items = providers.ScopedFactory(Items, session)
    audit = providers.ScopedFactory(Audit, session)
    clock = providers.ScopedFactory(threading.get_ident)


class Repositories(containers.DeclarativeContainer):
    """Repositories declared in a container of their own."""

    session = providers.Dependency()
    items = providers.ScopedFactory(Items, session)


class OuterContainer(containers.DeclarativeContainer):
    """A sync session and a nested container whose repositories use it."""

    engine = providers.Dependency(instance_of=Engine)
    journal = providers.Dependency(instance_of=list)
    session = providers.ScopedResource(open_sync_session, engine, journal)
    repositories = providers.Container(Repositories, session=session)


SyncSession = Annotated[Session, Depends(Scoped(SyncContainer.session))]
SyncItems = Annotated[Items, Depends(Scoped(SyncContainer.items))]
SyncAudit = Annotated[Audit, Depends(Scoped(SyncContainer.audit))]
AsyncItems = Annotated[Items, Depends(Scoped(AsyncContainer.items))]
AsyncAudit = Annotated[Audit, Depends(Scoped(AsyncContainer.audit))]


def stored_names(engine: Engine) -> list[str]:
    """The committed item names, read through a connection of their own."""
    with Session(engine) as session:
        return list(session.scalars(select(Item.name).order_by(Item.name)))


@pytest.fixture
def sync_engine(tmp_path: pathlib.Path) -> Iterator[Engine]:
    """A SQLite file with the items table; disposed afterwards."""
    engine = create_engine(f"sqlite:///{tmp_path / 'items.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(sync_engine: Engine) -> AsyncIterator[AsyncEngine]:
    """An aiosqlite engine on the same file; disposed afterwards."""
    url = sync_engine.url.set(drivername="sqlite+aiosqlite")
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


def sync_app(engine: Engine, journal: Journal) -> tuple[FastAPI, Any]:
    """``def`` endpoints on a sync session, injected with ``Scoped``."""
    container = SyncContainer(engine=engine, journal=journal)
    app = FastAPI()

    @app.post("/items")
    def add_items(names: list[str], items: SyncItems, audit: SyncAudit) -> dict[str, Any]:
        items.add(*names)
        return {
            "shared": items.session is audit.session,
            "endpoint_thread": threading.get_ident(),
            "repository_threads": [items.thread, audit.thread],
            "repository_round_trips": [items.round_trip, audit.round_trip],
        }

    @app.post("/items/reject")
    def reject_items(names: list[str], items: SyncItems) -> None:
        items.add(*names)
        raise HTTPException(status_code=409, detail="rejected")

    @app.get("/items")
    async def list_items(session: SyncSession) -> list[str]:
        return list(session.scalars(select(Item.name).order_by(Item.name)))

    app.add_middleware(ScopeMiddleware, container=container)
    return app, container


def async_app(engine: AsyncEngine, journal: Journal) -> tuple[FastAPI, Any]:
    """``async def`` endpoints on an async session, injected with ``Scoped``."""
    container = AsyncContainer(engine=engine, journal=journal)
    app = FastAPI()

    @app.post("/items")
    async def add_items(
        names: list[str],
        items: AsyncItems,
        audit: AsyncAudit,
        clock_thread: Annotated[int, Depends(Scoped(AsyncContainer.clock))],
    ) -> dict[str, Any]:
        items.add(*names)
        return {
            "shared": items.session is audit.session is await container.session(),
            "endpoint_thread": threading.get_ident(),
            "repository_threads": [items.thread, audit.thread, clock_thread],
        }

    app.add_middleware(ScopeMiddleware, container=container)
    return app, container


@pytest.fixture(params=["asgi", "uvicorn"])
def transport(request: pytest.FixtureRequest) -> str:
    """How the client reaches the app: in-process ASGI or a real uvicorn server."""
    return str(request.param)


class Client:
    """A client for an app over ``transport``; ``loop_thread`` is the thread of the app's loop."""

    def __init__(self, client: Any, loop_thread: int) -> None:
        self.client = client
        self.loop_thread = loop_thread


@pytest.fixture
def connect(transport: str) -> Callable[[FastAPI], Any]:
    """Open a client for an app over the chosen transport."""
    import contextlib

    @contextlib.asynccontextmanager
    async def open_client(app: FastAPI) -> AsyncIterator[Client]:
        if transport == "asgi":
            async with asgi_client(app) as client:
                yield Client(client, threading.get_ident())
            return
        with serving(app) as server:
            async with http_client(server) as client:
                yield Client(client, server.loop_thread)

    return open_client


# Injection ------------------------------------------------------------------------------


async def test_async_endpoint_resolves_on_the_loop_without_a_thread_hop(
    async_engine: AsyncEngine, sync_engine: Engine, connect: Any
) -> None:
    """In an async endpoint, the async session, its repositories and a sync provider are built on the loop's thread."""
    journal: Journal = []
    app, _ = async_app(async_engine, journal)
    async with connect(app) as client:
        response = await client.client.post("/items", json=["a", "b"])
        assert response.status_code == 200, response.text
    body = response.json()
    assert body["shared"] is True
    assert body["endpoint_thread"] == client.loop_thread
    assert body["repository_threads"] == [client.loop_thread] * 3
    assert [event for event, _ in journal] == ["create", "commit"]
    assert journal[0][1] == client.loop_thread
    assert stored_names(sync_engine) == ["a", "b"]


async def test_def_endpoint_sync_session_created_and_finalised_off_the_loop(
    sync_engine: Engine, connect: Any
) -> None:
    """In a def endpoint, the sync session is created and committed in worker threads, never the loop's."""
    journal: Journal = []
    app, _ = sync_app(sync_engine, journal)
    async with connect(app) as client:
        for round_number in range(3):
            response = await client.client.post("/items", json=[f"item {round_number}"])
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["shared"] is True
            assert body["endpoint_thread"] != client.loop_thread
            assert client.loop_thread not in body["repository_threads"]
        rejected = await client.client.post("/items/reject", json=["rejected"])
        assert rejected.status_code == 409
    assert [event for event, _ in journal] == ["create", "commit"] * 3 + ["create", "rollback"]
    assert all(thread != client.loop_thread for _, thread in journal)
    assert stored_names(sync_engine) == ["item 0", "item 1", "item 2"]


async def test_sync_provider_in_an_async_endpoint_is_resolved_on_the_loop(
    sync_engine: Engine,
) -> None:
    """An async endpoint gets a sync provider on the loop's thread, with no worker thread."""
    journal: Journal = []
    app, _ = sync_app(sync_engine, journal)
    async with asgi_client(app) as client:
        assert (await client.get("/items")).json() == []
    assert journal == [("create", threading.get_ident()), ("commit", journal[1][1])]
    assert journal[1][1] != threading.get_ident()


def test_scoped_gives_one_dependency_per_provider() -> None:
    """Scoped() of the same provider is the same callable (an override key); other providers differ."""
    assert Scoped(SyncContainer.session) is Scoped(SyncContainer.session)
    assert Scoped(SyncContainer.items) is not Scoped(SyncContainer.session)
    dependency = Scoped(SyncContainer.items)
    assert isinstance(dependency, ScopedDependency)
    assert dependency.provider is SyncContainer.items
    assert repr(dependency) == f"Scoped({SyncContainer.items!r})"


def test_scoped_keeps_no_provider_alive() -> None:
    """Once its dependency is unreferenced, a provider given to Scoped() can be collected."""

    class Provided:
        """A class only the provider references."""

    provided = weakref.ref(Provided)
    provider = providers.ScopedFactory(Provided)
    dependency = Scoped(provider)
    assert Scoped(provider) is dependency
    del Provided, provider, dependency
    gc.collect()
    assert provided() is None


async def test_dependency_overrides_replace_a_scoped_dependency(sync_engine: Engine) -> None:
    """app.dependency_overrides[Scoped(provider)] replaces it; the request creates no session."""
    journal: Journal = []
    app, _ = sync_app(sync_engine, journal)

    class FakeItems(Items):
        def add(self, *names: str) -> None:
            self.added = names

    app.dependency_overrides[Scoped(SyncContainer.items)] = lambda: FakeItems(None)
    app.dependency_overrides[Scoped(SyncContainer.audit)] = lambda: Audit(None)
    async with asgi_client(app) as client:
        response = await client.post("/items", json=["never stored"])
    assert response.status_code == 200
    assert response.json()["shared"] is True  # both fakes have session None
    assert journal == []
    assert stored_names(sync_engine) == []


async def test_class_attributes_resolve_the_instance_providers_of_nested_containers(
    sync_engine: Engine,
) -> None:
    """Scoped(Outer.repositories.items) gets the instance's repository on the request's one session."""
    journal: Journal = []
    container = OuterContainer(engine=sync_engine, journal=journal)
    app = FastAPI()

    @app.post("/items")
    async def add_items(
        names: list[str],
        items: Annotated[Items, Depends(Scoped(OuterContainer.repositories.items))],
        session: Annotated[Session, Depends(Scoped(OuterContainer.session))],
    ) -> dict[str, bool]:
        items.add(*names)
        return {
            "shared": items.session is session is container.session(),
            "instance": items is container.repositories.items(),
        }

    app.add_middleware(ScopeMiddleware, container=container)
    async with asgi_client(app) as client:
        response = await client.post("/items", json=["nested"])
    assert response.json() == {"shared": True, "instance": True}
    assert stored_names(sync_engine) == ["nested"]


async def test_overriding_the_container_provider_applies(sync_engine: Engine) -> None:
    """container.items.override(...) changes what Scoped(Container.items) resolves."""
    journal: Journal = []
    app, container = sync_app(sync_engine, journal)
    with container.items.override(providers.ScopedFactory(Audit, container.session)):
        async with asgi_client(app) as client:
            response = await client.post("/items", json=["overridden"])
    assert response.status_code == 200
    assert stored_names(sync_engine) == ["overridden"]
    assert [event for event, _ in journal] == ["create", "commit"]


@pytest.mark.parametrize("endpoint", ["async", "def"])
async def test_without_middleware_the_error_names_the_provider_and_the_remedy(
    sync_engine: Engine, endpoint: str
) -> None:
    """Without ScopeMiddleware, a Scoped dependency raises NoActiveScopeError naming the provider and the middleware."""
    app = FastAPI()
    if endpoint == "async":

        @app.get("/items")
        async def list_items(items: SyncItems) -> None:
            raise AssertionError("not reached")
    else:

        @app.get("/items")
        def list_items_in_thread(items: SyncItems) -> None:
            raise AssertionError("not reached")

    async with asgi_client(app, raise_app_exceptions=True) as client:
        with pytest.raises(errors.NoActiveScopeError) as caught:
            await client.get("/items")
    message = str(caught.value)
    # A class attribute is named by what it provides.
    assert "ScopedFactory" in message
    assert "Items" in message
    assert "add_middleware(ScopeMiddleware" in message


# A def endpoint's sync dependencies in one round trip --------------------------------------


@pytest.fixture
def numbered_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Number anyio's worker-thread round trips (FastAPI's and Scoped's): the nth sets current_round_trip.number = n."""
    import itertools

    import anyio.to_thread

    numbers = itertools.count(1)
    run_sync = anyio.to_thread.run_sync

    async def numbered(function: Callable[..., Any], *args: Any, **options: Any) -> Any:
        number = next(numbers)

        def run() -> Any:
            current_round_trip.number = number
            try:
                return function(*args)
            finally:
                current_round_trip.number = None

        return await run_sync(run, **options)

    monkeypatch.setattr(anyio.to_thread, "run_sync", numbered)


class Service:
    """A service on two repositories."""

    def __init__(self, items: Items, audit: Audit) -> None:
        self.items = items
        self.audit = audit


async def test_def_endpoint_creates_its_sync_dependencies_in_one_round_trip(
    sync_engine: Engine, numbered_round_trips: None
) -> None:
    """A def endpoint's two repositories (and their session) are created in one worker-thread round trip."""
    journal: Journal = []
    app, _ = sync_app(sync_engine, journal)
    async with asgi_client(app) as client:
        for round_number in range(2):
            response = await client.post("/items", json=[f"item {round_number}"])
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["shared"] is True
            first, second = body["repository_round_trips"]
            assert first == second is not None
    assert [event for event, _ in journal] == ["create", "commit"] * 2
    assert stored_names(sync_engine) == ["item 0", "item 1"]


async def test_scoped_dependencies_of_a_def_endpoints_own_dependency_join_the_round_trip(
    sync_engine: Engine, numbered_round_trips: None
) -> None:
    """The Scoped dependencies of a sync dependency and of the endpoint are created together, on one session."""
    journal: Journal = []
    container = SyncContainer(engine=sync_engine, journal=journal)
    app = FastAPI()

    def get_service(items: SyncItems, audit: SyncAudit) -> Service:
        return Service(items, audit)

    @app.post("/items")
    def add_items(
        names: list[str],
        service: Annotated[Service, Depends(get_service)],
        session: Annotated[Session, Depends(Scoped(SyncContainer.session))],
    ) -> dict[str, Any]:
        service.items.add(*names)
        return {
            "shared": service.items.session is service.audit.session is session,
            "round_trips": [service.items.round_trip, service.audit.round_trip],
        }

    app.add_middleware(ScopeMiddleware, container=container)
    async with asgi_client(app) as client:
        response = await client.post("/items", json=["nested"])
    body = response.json()
    assert body["shared"] is True
    first, second = body["round_trips"]
    assert first == second is not None
    assert [event for event, _ in journal] == ["create", "commit"]
    assert stored_names(sync_engine) == ["nested"]


async def test_an_overridden_dependency_of_a_def_endpoint_is_never_created(
    sync_engine: Engine,
) -> None:
    """With one of a def endpoint's two Scoped dependencies overridden, only the other is created."""
    journal: Journal = []
    app, container = sync_app(sync_engine, journal)
    created: list[Any] = []

    def real_audit(session: Session) -> Audit:
        created.append(session)
        return Audit(session)

    class FakeAudit(Audit):
        """Stands in for the audit repository."""

    app.dependency_overrides[Scoped(SyncContainer.audit)] = lambda: FakeAudit(None)
    with container.audit.override(providers.ScopedFactory(real_audit, container.session)):
        async with asgi_client(app) as client:
            response = await client.post("/items", json=["kept"])
    assert response.status_code == 200, response.text
    assert response.json()["shared"] is False  # the fake has no session
    assert created == []
    assert [event for event, _ in journal] == ["create", "commit"]
    assert stored_names(sync_engine) == ["kept"]


async def test_def_endpoint_with_an_async_and_a_sync_dependency(
    sync_engine: Engine, async_engine: AsyncEngine
) -> None:
    """In a def endpoint, a sync repository is created off the loop and the async one after it awaited on it."""
    journal: Journal = []

    class Mixed(containers.DeclarativeContainer):
        """A sync and an async session, each with a repository."""

        sync_engine = providers.Dependency(instance_of=Engine)
        async_engine = providers.Dependency(instance_of=AsyncEngine)
        journal = providers.Dependency(instance_of=list)
        sync_session = providers.ScopedResource(open_sync_session, sync_engine, journal)
        async_session = providers.ScopedResource(open_async_session, async_engine, journal)
        items = providers.ScopedFactory(Items, sync_session)
        audit = providers.ScopedFactory(Audit, async_session)

    container = Mixed(sync_engine=sync_engine, async_engine=async_engine, journal=journal)
    app = FastAPI()

    @app.post("/items")
    def add_items(
        names: list[str],
        items: Annotated[Items, Depends(Scoped(Mixed.items))],
        audit: Annotated[Audit, Depends(Scoped(Mixed.audit))],
    ) -> dict[str, Any]:
        items.add(*names)
        return {"sync": isinstance(items.session, Session), "thread": items.thread}

    app.add_middleware(ScopeMiddleware, container=container)
    async with asgi_client(app) as client:
        response = await client.post("/items", json=["mixed"])
    assert response.status_code == 200, response.text
    assert response.json() == {"sync": True, "thread": response.json()["thread"]}
    assert response.json()["thread"] != threading.get_ident()
    creates = [thread for event, thread in journal if event == "create"]
    assert sorted(event for event, _ in journal) == ["commit", "commit", "create", "create"]
    # The sync session in a worker thread, then the async one on the loop's thread.
    assert creates[0] != threading.get_ident() == creates[1]
    assert stored_names(sync_engine) == ["mixed"]


# @inject + Depends(Provide[...]) ------------------------------------------------------------


@inject
async def add_with_provide(
    names: list[str],
    items: Items = Depends(Provide[AsyncContainer.items]),
    audit: Audit = Depends(Provide[AsyncContainer.audit]),
) -> dict[str, bool]:
    """An async endpoint injected by wiring."""
    items.add(*names)
    return {"shared": items.session is audit.session}


@inject
def add_with_provide_in_thread(
    names: list[str],
    items: Items = Depends(Provide[SyncContainer.items]),
    audit: Audit = Depends(Provide[SyncContainer.audit]),
) -> dict[str, bool]:
    """A def endpoint injected by wiring."""
    items.add(*names)
    return {"shared": items.session is audit.session}


@pytest.mark.parametrize("endpoint", ["async", "def"])
async def test_inject_with_depends_provide_keeps_working(
    sync_engine: Engine, async_engine: AsyncEngine, endpoint: str
) -> None:
    """@inject + Depends(Provide[...]) after wire(): one session per request, shared and committed."""
    import sys

    journal: Journal = []
    container: Any
    if endpoint == "async":
        container = AsyncContainer(engine=async_engine, journal=journal)
        handler: Callable[..., Any] = add_with_provide
    else:
        container = SyncContainer(engine=sync_engine, journal=journal)
        handler = add_with_provide_in_thread
    app = FastAPI()
    app.add_api_route("/items", handler, methods=["POST"])
    app.add_middleware(ScopeMiddleware, container=container)
    container.wire(modules=[sys.modules[__name__]])
    try:
        async with asgi_client(app) as client:
            first = await client.post("/items", json=["first"])
            second = await client.post("/items", json=["second"])
    finally:
        container.unwire()
    assert first.json() == second.json() == {"shared": True}
    assert [event for event, _ in journal] == ["create", "commit"] * 2
    assert stored_names(sync_engine) == ["first", "second"]


# Keep-alive after a failing commit ---------------------------------------------------------


async def test_keep_alive_client_survives_a_500_from_a_failing_commit(sync_engine: Engine) -> None:
    """Over uvicorn with one reused client: a failing commit answers 500 with Connection: close, the next request succeeds."""
    journal: Journal = []
    app, _ = sync_app(sync_engine, journal)

    @app.get("/port")
    async def client_port(request: Request) -> int:
        assert request.client is not None
        return request.client.port

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with serving(app) as server:
        async with http_client(server, limits=limits) as client:
            assert (await client.post("/items", json=["taken"])).status_code == 200
            for round_number in range(20):
                # Two successes on one connection: the client does keep it alive.
                first_port = (await client.get("/port")).json()
                assert (await client.get("/port")).json() == first_port
                failed = await client.post("/items", json=[f"fresh {round_number}", "taken"])
                assert failed.status_code == 500
                assert failed.headers["connection"] == "close"
                after = await client.post("/items", json=[f"after {round_number}"])
                assert after.status_code == 200, after.text
    assert stored_names(sync_engine) == sorted(
        ["taken", *(f"after {number}" for number in range(20))]
    )
