"""An async graph is created by one coroutine, its deferred dependencies depth first.

Every dependency still gets a mark of its own: a failure, a cancellation or a
closed coroutine anywhere in the graph releases every mark, another task
sharing the scope waits for a dependency being created, and what each
dependency's initializer needs (an awaitable result, attributes, an async
context manager) is awaited where it belongs.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from dependency_injector_scoped import containers, errors, providers

TIMEOUT = 5


class Session:
    def __init__(self) -> None:
        self.closed = False


class Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


class Service:
    def __init__(self, a: Repo, b: Repo) -> None:
        self.a = a
        self.b = b


def graph(session_factory, *, keywords: bool):
    """service -> (a, b) -> session, the request graph of the README."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(session_factory)
        if keywords:
            a = providers.ScopedFactory(Repo, session=session)
            b = providers.ScopedFactory(Repo, session=session)
            service = providers.ScopedFactory(Service, a=a, b=b)
        else:
            a = providers.ScopedFactory(Repo, session)
            b = providers.ScopedFactory(Repo, session)
            service = providers.ScopedFactory(Service, a, b)

    return Container()


def opened(log: list[str], gate: asyncio.Event | None = None, fail: BaseException | None = None):
    async def session():
        log.append("open")
        if gate is not None:
            await gate.wait()
        else:
            await asyncio.sleep(0)
        if fail is not None:
            raise fail
        value = Session()
        try:
            yield value
        finally:
            value.closed = True
            log.append("close")

    return session


@pytest.mark.parametrize("keywords", [False, True], ids=["positional", "keywords"])
async def test_graph_shares_one_session_and_closes_it(keywords):
    log: list[str] = []
    container = graph(opened(log), keywords=keywords)
    for _ in range(2):
        async with container.scope():
            service = await container.service()
            assert service.a.session is service.b.session
            assert service.a is await container.a()
            assert service.a.session is await container.session()
        assert service.a.session.closed
    assert log == ["open", "close", "open", "close"]


@pytest.mark.parametrize("keywords", [False, True], ids=["positional", "keywords"])
async def test_failure_deep_in_the_graph_releases_every_mark(keywords):
    log: list[str] = []
    failing = {"on": True}

    async def session():
        log.append("open")
        await asyncio.sleep(0)
        if failing["on"]:
            raise LookupError("no database")
        yield Session()

    container = graph(session, keywords=keywords)
    async with container.scope():
        with pytest.raises(LookupError, match="no database"):
            await asyncio.wait_for(container.service(), TIMEOUT)
        failing["on"] = False
        # Nothing is left marked "being created": each provider creates again.
        service = await asyncio.wait_for(container.service(), TIMEOUT)
        assert service.a.session is service.b.session
        assert await container.a() is service.a
    assert log == ["open", "open"]


async def test_cancellation_deep_in_the_graph_releases_every_mark():
    log: list[str] = []
    gate = asyncio.Event()
    container = graph(opened(log, gate), keywords=True)
    async with container.scope():
        task = asyncio.ensure_future(container.service())
        while log != ["open"]:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        service = await asyncio.wait_for(container.service(), TIMEOUT)
        assert service.a.session is await container.session()
    assert log == ["open", "open", "close"]


async def test_closed_coroutine_deep_in_the_graph_releases_every_mark():
    log: list[str] = []
    gate = asyncio.Event()
    container = graph(opened(log, gate), keywords=False)
    async with container.scope():
        coroutine = container.service()
        step = coroutine.__await__()
        step.send(None)  # runs until the session's initializer waits
        assert log == ["open"]
        step.close()
        gate.set()
        service = await asyncio.wait_for(container.service(), TIMEOUT)
        assert isinstance(service, Service)
    gc.collect()
    assert log == ["open", "open", "close"]


async def test_other_task_waits_for_a_dependency_being_created():
    log: list[str] = []
    gate = asyncio.Event()
    container = graph(opened(log, gate), keywords=True)
    async with container.scope():
        first = asyncio.ensure_future(container.a())
        while log != ["open"]:
            await asyncio.sleep(0)
        # The service's graph reaches `a`, which the other task is creating.
        second = asyncio.ensure_future(container.service())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not second.done()
        gate.set()
        a = await asyncio.wait_for(first, TIMEOUT)
        service = await asyncio.wait_for(second, TIMEOUT)
        assert service.a is a
        assert service.b.session is a.session
    assert log == ["open", "close"]


async def test_scope_closing_while_a_dependency_waits_fails_the_creation():
    log: list[str] = []
    gate = asyncio.Event()
    container = graph(opened(log, gate), keywords=True)
    scope = container.scope()
    await scope.__aenter__()
    task = asyncio.ensure_future(container.service())
    while log != ["open"]:
        await asyncio.sleep(0)
    await scope.__aexit__(None, None, None)
    gate.set()
    with pytest.raises(errors.ScopeClosedError):
        await asyncio.wait_for(task, TIMEOUT)
    # The session created after the close was finalised at once.
    assert log == ["open", "close"]


async def test_dependencies_with_async_factories_attributes_and_managers():
    class Manager:
        def __init__(self, session: Session) -> None:
            self.session = session
            self.exited = False

        async def __aenter__(self):
            await asyncio.sleep(0)
            return self

        async def __aexit__(self, *exc_info):
            self.exited = True

    async def make_repo(session: Session) -> Repo:
        await asyncio.sleep(0)
        return Repo(session)

    log: list[str] = []

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(opened(log))
        repo = providers.ScopedFactory(make_repo, session)
        manager = providers.ScopedResource(Manager, session)
        holder = providers.ScopedFactory(Service, repo, manager)
        holder.add_attributes(extra=session)
        top = providers.ScopedFactory(Service, holder, manager)

    container = Container()
    async with container.scope():
        top = await container.top()
        holder = top.a
        assert isinstance(holder.a, Repo)
        assert holder.b is top.b
        assert holder.extra is holder.a.session is top.b.session
        manager = top.b
    assert manager.exited
    assert log == ["open", "close"]


async def test_deep_async_chain_raises_recursion_error_not_a_crash():
    async def session():
        yield Session()

    class Container(containers.DeclarativeContainer):
        root = providers.ScopedResource(session)

    container = Container()
    previous = container.root
    chain = []
    for _ in range(3000):
        previous = providers.ScopedFactory(Repo, previous)
        chain.append(previous)
    async with container.scope():
        with pytest.raises(RecursionError):
            await chain[-1]()
        # Every mark was released: a short chain still resolves.
        assert isinstance(await chain[10](), Repo)
