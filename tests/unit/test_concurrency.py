"""Scopes follow contextvars into tasks and threads; concurrent first resolutions create once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import time

import anyio.to_thread
import pytest

from dependency_injector_scoped import containers, errors, get_current_scope, providers, scope

TIMEOUT = 5


class Thing:
    """An object created by scoped providers in these tests."""

    def __init__(self, *parts: object) -> None:
        self.parts = parts


def open_session():
    yield Thing()


class Container(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    service = providers.ScopedFactory(Thing, session)


def seen_here(c: Container) -> tuple[object, object]:
    return get_current_scope(), c.session()


# The same scope in tasks and threads -------------------------------------------


async def test_gather_children_share_the_scope():
    """Coroutines run by asyncio.gather see the parent's scope and its session."""
    c = Container()

    async def child():
        await asyncio.sleep(0)
        return seen_here(c)

    async with c.scope() as s:
        results = await asyncio.gather(child(), child(), child())
        assert results == [(s, c.session())] * 3


async def test_created_task_shares_the_scope():
    """A task created inside the scope sees the same scope token and session."""
    c = Container()

    async def child():
        return seen_here(c)

    async with c.scope() as s:
        assert await asyncio.create_task(child()) == (s, c.session())


async def test_to_thread_shares_the_scope():
    """asyncio.to_thread runs with the same scope token and session."""
    c = Container()
    async with c.scope() as s:
        assert await asyncio.to_thread(seen_here, c) == (s, c.session())


async def test_anyio_worker_thread_shares_the_scope():
    """anyio.to_thread.run_sync runs with the same scope token and session."""
    c = Container()
    async with c.scope() as s:
        assert await anyio.to_thread.run_sync(seen_here, c) == (s, c.session())


async def test_run_in_executor_with_copied_context_shares_the_scope():
    """loop.run_in_executor with contextvars.copy_context().run sees the same scope."""
    c = Container()
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        async with c.scope() as s:
            context = contextvars.copy_context()
            result = await loop.run_in_executor(pool, context.run, seen_here, c)
            assert result == (s, c.session())


async def test_lazy_creation_in_a_child_task_is_visible_to_parent_and_siblings():
    """A ScopedFactory first resolved in a child task is the instance the parent and siblings get."""
    c = Container()

    async def child():
        return c.service()

    async with c.scope() as s:
        assert c.service not in s
        first = await asyncio.create_task(child())
        assert c.service in s
        sibling = await asyncio.create_task(child())
        assert sibling is first
        assert c.service() is first
        gathered = await asyncio.gather(child(), child())
        assert gathered == [first, first]


async def test_lazy_creation_in_a_worker_thread_is_visible_to_the_parent():
    """A ScopedFactory first resolved in asyncio.to_thread is the instance the parent gets."""
    c = Container()
    async with c.scope():
        created = await asyncio.to_thread(c.service)
        assert c.service() is created
        assert await anyio.to_thread.run_sync(c.service) is created


async def test_lazy_async_creation_in_a_child_task_is_visible_to_the_parent():
    """An async ScopedResource first created in a child task is the instance the parent's call awaits to."""

    async def open_connection():
        await asyncio.sleep(0)
        yield Thing()

    connection = providers.ScopedResource(open_connection)

    async def child():
        return await connection()

    async with scope(containers.DynamicContainer()) as s:
        created = await asyncio.create_task(child())
        assert connection in s
        again = connection()
        assert inspect.isawaitable(again)
        assert await again is created


# Concurrent first resolutions: asyncio ---------------------------------------


async def test_concurrent_async_first_resolutions_create_once():
    """Coroutines racing on a ScopedFactory whose dependency must be awaited share one creation."""
    calls = []

    async def connect():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        service = providers.ScopedFactory(Thing, connection)

    c = Local()
    async with c.scope():
        results = await asyncio.wait_for(
            asyncio.gather(*(c.service.async_() for _ in range(5))), TIMEOUT
        )
    assert len(calls) == 1
    assert all(result is results[0] for result in results)
    assert results[0].parts == ("connection",)


async def test_concurrent_async_resource_first_resolutions_create_once():
    """Tasks racing on a lazy async ScopedResource initialise and finalise it once."""
    events: list[str] = []

    async def open_connection():
        events.append("open")
        await asyncio.sleep(0.01)
        yield Thing()
        events.append("close")

    connection = providers.ScopedResource(open_connection)

    async def resolve():
        return await connection.async_()

    async with scope(containers.DynamicContainer()):
        results = await asyncio.wait_for(asyncio.gather(*(resolve() for _ in range(5))), TIMEOUT)
        assert events == ["open"]
    assert all(result is results[0] for result in results)
    assert events == ["open", "close"]


async def test_failed_async_creation_is_shared_by_waiters_and_retried_later():
    """Waiters of a failing async creation get its error; the next resolution creates again."""
    calls = []

    async def connect():
        calls.append(1)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("first attempt fails")
        return "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        service = providers.ScopedFactory(Thing, connection)

    c = Local()
    async with c.scope():
        results = await asyncio.wait_for(
            asyncio.gather(*(c.service.async_() for _ in range(3)), return_exceptions=True), TIMEOUT
        )
        assert len(calls) == 1
        assert all(isinstance(result, ConnectionError) for result in results)
        assert c.service not in get_current_scope()
        created = await c.service.async_()
        assert await c.service() is created
    assert len(calls) == 2


async def test_cancelled_async_creator_leaves_the_creation_to_a_waiter():
    """When the task creating an instance is cancelled, a waiting task creates it instead."""
    calls = []
    release = asyncio.Event()

    async def connect():
        calls.append(1)
        await release.wait()
        return "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        service = providers.ScopedFactory(Thing, connection)

    c = Local()
    async with c.scope():
        creator = asyncio.create_task(c.service.async_())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(c.service.async_())
        await asyncio.sleep(0)
        creator.cancel()
        with pytest.raises(asyncio.CancelledError):
            await creator
        release.set()
        created = await asyncio.wait_for(waiter, TIMEOUT)
        assert await c.service() is created
    assert len(calls) == 2


async def test_thread_waits_for_an_async_creation_in_progress():
    """A worker thread's call returns an awaitable; run on the loop, it waits for the creation in progress and gives that instance."""
    calls = []
    release = asyncio.Event()

    async def connect():
        calls.append(1)
        await release.wait()
        return "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        service = providers.ScopedFactory(Thing, connection)

    c = Local()
    loop = asyncio.get_running_loop()

    def resolve_in_thread():
        pending = c.service()
        assert inspect.isawaitable(pending)
        return asyncio.run_coroutine_threadsafe(pending, loop).result(TIMEOUT)

    async with c.scope():
        creator = asyncio.create_task(c.service.async_())
        await asyncio.sleep(0)
        in_thread = asyncio.create_task(asyncio.to_thread(resolve_in_thread))
        await asyncio.sleep(0.05)
        assert not in_thread.done()
        release.set()
        created = await asyncio.wait_for(creator, TIMEOUT)
        assert await asyncio.wait_for(in_thread, TIMEOUT) is created
    assert len(calls) == 1


# Concurrent first resolutions: threads ---------------------------------------


def run_in_threads(count: int, function) -> list[object]:
    """Run ``function`` in ``count`` threads, each with a copy of this context, started together."""
    barrier = threading.Barrier(count, timeout=TIMEOUT)

    def worker(context: contextvars.Context):
        def body():
            barrier.wait()
            return function()

        return context.run(body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(worker, contextvars.copy_context()) for _ in range(count)]
        return [future.result(timeout=TIMEOUT) for future in futures]


def test_threads_racing_on_a_first_resolution_create_once():
    """Threads resolving a ScopedFactory at the same time all get one instance, created once."""
    calls = []
    lock = threading.Lock()

    def build():
        with lock:
            calls.append(threading.get_ident())
        time.sleep(0.05)
        return Thing()

    class Local(containers.DeclarativeContainer):
        service = providers.ScopedFactory(build)

    c = Local()
    with c.scope():
        results = run_in_threads(8, c.service)
        assert c.service() is results[0]
    assert len(calls) == 1
    assert all(result is results[0] for result in results)


def test_threads_racing_on_a_scoped_resource_initialise_it_once():
    """Threads resolving a lazy ScopedResource at the same time initialise and finalise it once."""
    events: list[str] = []

    def open_connection():
        events.append("open")
        time.sleep(0.05)
        yield Thing()
        events.append("close")

    connection = providers.ScopedResource(open_connection)
    with scope(containers.DynamicContainer()):
        results = run_in_threads(8, connection)
    assert events == ["open", "close"]
    assert all(result is results[0] for result in results)


def test_initializer_resolving_another_scoped_provider_does_not_deadlock():
    """Threads racing on an instance whose initializer resolves another scoped provider all finish."""
    calls = {"outer": 0, "inner": 0}
    lock = threading.Lock()

    def build_inner():
        with lock:
            calls["inner"] += 1
        time.sleep(0.02)
        return Thing()

    def build_outer():
        with lock:
            calls["outer"] += 1
        time.sleep(0.02)
        return Thing(c.inner())

    class Local(containers.DeclarativeContainer):
        inner = providers.ScopedFactory(build_inner)
        outer = providers.ScopedFactory(build_outer)

    c = Local()
    counter = iter(range(100))
    counter_lock = threading.Lock()

    def resolve_either():
        with counter_lock:
            index = next(counter)
        return c.outer() if index % 2 else c.inner()

    with c.scope():
        results = run_in_threads(8, resolve_either)
        outer, inner = c.outer(), c.inner()
    assert calls == {"outer": 1, "inner": 1}
    assert outer.parts == (inner,)
    assert {id(result) for result in results} == {id(outer), id(inner)}


def test_provider_resolving_itself_raises_circular_scope_error():
    """A ScopedFactory whose initializer resolves itself raises ScopeError naming the cycle."""

    def build():
        return Thing(c.looped())

    class Local(containers.DeclarativeContainer):
        looped = providers.ScopedFactory(build)

    c = Local()
    with c.scope() as s:
        with pytest.raises(errors.ScopeError, match="Circular") as caught:
            c.looped()
        assert "looped" in str(caught.value)
        assert c.looped not in s
        with pytest.raises(errors.ScopeError, match="Circular"):
            c.looped()


def test_cycle_between_two_providers_raises_circular_scope_error():
    """Two scoped providers depending on each other raise ScopeError instead of recursing."""

    def build_a():
        return Thing(c.b())

    def build_b():
        return Thing(c.a())

    class Local(containers.DeclarativeContainer):
        a = providers.ScopedFactory(build_a)
        b = providers.ScopedFactory(build_b)

    c = Local()
    with c.scope():
        with pytest.raises(errors.ScopeError, match="Circular"):
            c.a()


def test_failed_creation_leaves_no_instance_and_is_retried():
    """When an initializer raises, the error propagates and the next resolution creates again."""
    calls = []

    def build():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt fails")
        return Thing()

    class Local(containers.DeclarativeContainer):
        service = providers.ScopedFactory(build)

    c = Local()
    with c.scope() as s:
        with pytest.raises(ValueError, match="first attempt"):
            c.service()
        assert c.service not in s
        created = c.service()
        assert c.service() is created
    assert len(calls) == 2


async def test_async_provider_resolving_itself_raises_circular_scope_error():
    """An async creation that awaits its own provider raises ScopeError naming the cycle instead of hanging."""

    async def connect():
        return await c.looped.async_()

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        looped = providers.ScopedFactory(Thing, connection)

    c = Local()
    async with c.scope():
        with pytest.raises(errors.ScopeError, match="Circular"):
            await asyncio.wait_for(c.looped.async_(), 1)


async def test_instance_is_not_in_the_scope_while_being_created():
    """`provider in scope` is False while an async creation is still pending, True once it is done."""
    release = asyncio.Event()

    async def connect():
        await release.wait()
        return "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        service = providers.ScopedFactory(Thing, connection)

    c = Local()
    async with c.scope() as s:
        creator = asyncio.create_task(c.service.async_())
        await asyncio.sleep(0)
        assert c.service not in s
        release.set()
        await asyncio.wait_for(creator, TIMEOUT)
        assert c.service in s


# Independent scopes side by side ----------------------------------------------


async def test_concurrent_tasks_with_their_own_scopes_do_not_share_instances():
    """Tasks each opening their own scope get their own session, finalised with their scope."""
    events: list[str] = []

    async def open_session():
        session = Thing()
        events.append("open")
        yield session
        events.append("close")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)

    c = Local()

    async def request():
        async with c.scope() as s:
            await asyncio.sleep(0)
            assert get_current_scope() is s
            session = await c.session()
            await asyncio.sleep(0)
            return session

    sessions = await asyncio.wait_for(asyncio.gather(*(request() for _ in range(5))), TIMEOUT)
    assert len({id(session) for session in sessions}) == 5
    assert events == ["open"] * 5 + ["close"] * 5
    assert get_current_scope() is None


def test_threads_with_their_own_scopes_do_not_share_instances():
    """Threads each opening their own scope get their own instance."""
    c = Container()

    def request():
        with c.scope():
            first = c.service()
            time.sleep(0.01)
            assert c.service() is first
            return first

    results = run_in_threads(4, request)
    assert len({id(result) for result in results}) == 4


async def test_cancelled_scope_body_delivers_the_cancellation_to_finalisers():
    """Cancelling a task inside `async with` throws CancelledError into the generators, which still finalise."""
    events: list[str] = []
    entered = asyncio.Event()

    async def open_transaction():
        try:
            yield "tx"
            events.append("commit")
        except BaseException as exc:
            events.append(f"rollback {type(exc).__name__}")
            raise

    class Local(containers.DeclarativeContainer):
        tx = providers.ScopedResource(open_transaction)

    c = Local()

    async def handler():
        async with c.scope():
            assert await c.tx() == "tx"
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(handler())
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert events == ["rollback CancelledError"]


def test_threads_waiting_on_a_failed_creation_share_its_error_then_it_is_created_once_more():
    """Threads waiting for a failing creation get its error, as waiting tasks do; the next resolution creates it once."""
    calls = []
    lock = threading.Lock()

    def build():
        with lock:
            calls.append(1)
            attempt = len(calls)
        time.sleep(0.1)
        if attempt == 1:
            raise ConnectionError("first attempt fails")
        return Thing()

    class Local(containers.DeclarativeContainer):
        service = providers.ScopedFactory(build)

    c = Local()

    def resolve():
        try:
            return c.service()
        except ConnectionError as error:
            return error

    with c.scope() as s:
        results = run_in_threads(6, resolve)
        assert len(calls) == 1
        assert c.service not in s
        created = c.service()
        assert c.service() is created
    assert all(isinstance(result, ConnectionError) for result in results)
    assert len({id(result) for result in results}) == 1
    assert len(calls) == 2
