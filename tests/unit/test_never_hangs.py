"""Never hangs: the "being created" mark is always released, and cycles raise instead of waiting.

Every wait here is bounded (``asyncio.wait_for``, joins and events with a timeout), so a
regression fails in seconds instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time

import pytest

from dependency_injector_scoped import containers, errors, providers

TIMEOUT = 5


class Boom(Exception):
    """A failing dependency of these tests."""


class Thing:
    def __init__(self, *parts: object) -> None:
        self.parts = parts


async def bounded(scenario):
    """Run ``scenario()`` (a coroutine function opening its own scope) for at most TIMEOUT s."""
    return await asyncio.wait_for(scenario(), TIMEOUT)


def async_item(kind: str, build):
    """An async scoped provider creating ``await build()``: a resource or a factory."""
    if kind == "resource":

        async def initializer():
            yield await build()

        return providers.ScopedResource(initializer)
    return providers.ScopedFactory(build)


ASYNC_ITEMS = ["resource", "factory"]


def sync_item(kind: str, build):
    """A sync scoped provider creating ``build()``: a resource or a factory."""
    if kind == "resource":

        def initializer():
            yield build()

        return providers.ScopedResource(initializer)
    return providers.ScopedFactory(build)


SYNC_ITEMS = ["resource", "factory"]


# The mark is released on every path out ---------------------------------------------


@pytest.mark.parametrize("kind", ASYNC_ITEMS)
async def test_creation_coroutine_closed_before_its_first_step_releases_the_mark(kind):
    """Closing a creation coroutine that never ran lets the next resolution create the instance."""
    calls: list[int] = []

    async def build():
        calls.append(1)
        return Thing()

    c = containers.DynamicContainer()
    c.item = async_item(kind, build)

    async def scenario():
        async with c.scope():
            pending = c.item()
            pending.close()
            return await c.item()

    assert isinstance(await bounded(scenario), Thing)
    assert calls == [1]


@pytest.mark.parametrize("kind", ASYNC_ITEMS)
async def test_cancelled_creation_releases_the_mark(kind):
    """Cancelling the task creating an instance lets a later resolution create it again."""
    started = asyncio.Event()
    calls: list[int] = []

    async def build():
        calls.append(1)
        if len(calls) == 1:
            started.set()
            await asyncio.Event().wait()  # until cancelled
        return Thing()

    c = containers.DynamicContainer()
    c.item = async_item(kind, build)

    async def resolve():
        return await c.item()

    async def scenario():
        async with c.scope():
            creator = asyncio.create_task(resolve())
            await started.wait()
            creator.cancel()
            with pytest.raises(asyncio.CancelledError):
                await creator
            return await c.item()

    assert isinstance(await bounded(scenario), Thing)
    assert calls == [1, 1]


@pytest.mark.parametrize("failing_first", [True, False], ids=["failing first", "failing second"])
@pytest.mark.parametrize("kind", ASYNC_ITEMS)
async def test_sibling_dependency_failure_releases_the_other_dependency(kind, failing_first):
    """When one of two async dependencies fails, the other one can still be resolved afterwards."""

    async def build_ok():
        await asyncio.sleep(0)
        return Thing("ok")

    async def build_failing():
        await asyncio.sleep(0)
        raise Boom("dependency failed")

    c = containers.DynamicContainer()
    c.ok = async_item(kind, build_ok)
    c.failing = async_item(kind, build_failing)
    dependencies = (c.failing, c.ok) if failing_first else (c.ok, c.failing)
    c.service = providers.ScopedFactory(Thing, *dependencies)

    async def scenario():
        async with c.scope():
            with pytest.raises(Boom):
                await c.service()
            return await c.ok()

    assert (await bounded(scenario)).parts == ("ok",)


# Cycles raise ---------------------------------------------------------------------------


def test_cycle_in_one_thread_names_the_chain():
    """A cycle a -> b -> a raises ScopeError starting "Circular dependency" and naming the chain."""

    def build_a():
        return Thing(c.b())

    def build_b():
        return Thing(c.a())

    c = containers.DynamicContainer()
    c.a = providers.ScopedFactory(build_a)
    c.b = providers.ScopedFactory(build_b)
    with c.scope():
        with pytest.raises(errors.ScopeError, match=r"^Circular dependency") as caught:
            c.a()
    assert caught.match(r"'a'.*->.*'b'.*->.*'a'")


@pytest.mark.parametrize("spawn", ["gather", "ensure_future"])
async def test_cycle_through_a_child_task_raises_circular_dependency(spawn):
    """An initializer awaiting its own provider in a child task raises instead of waiting for itself."""

    async def open_a():
        if spawn == "gather":
            await asyncio.gather(c.a())
        else:
            await asyncio.ensure_future(c.a())
        yield Thing()

    c = containers.DynamicContainer()
    c.a = providers.ScopedResource(open_a)

    async def scenario():
        async with c.scope():
            with pytest.raises(errors.ScopeError, match=r"^Circular dependency") as caught:
                await c.a()
            assert "'a'" in str(caught.value)

    await bounded(scenario)


def run_with_copied_context(function, results: dict[str, object], key: str) -> threading.Thread:
    """Start ``function`` in a daemon thread with a copy of this context; store what it gives."""
    context = contextvars.copy_context()

    def body():
        try:
            results[key] = function()
        except BaseException as error:
            results[key] = error

    thread = threading.Thread(target=context.run, args=(body,), daemon=True)
    thread.start()
    return thread


def join_all(threads: list[threading.Thread]) -> bool:
    """Join ``threads`` within TIMEOUT seconds in all; whether every one finished."""
    deadline = time.monotonic() + TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


@pytest.mark.parametrize("kind", SYNC_ITEMS)
def test_abba_between_two_threads_raises_instead_of_deadlocking(kind):
    """Two threads creating a (needs b) and b (needs a) at once: one gets "Circular dependency"."""
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    first_calls = {"a", "b"}

    def meet_the_other_thread(name):
        # Only the first call of each initializer meets the other thread: a retry must not wait.
        if name in first_calls:
            first_calls.discard(name)
            barrier.wait()

    def build_a():
        meet_the_other_thread("a")
        return Thing(c.b())

    def build_b():
        meet_the_other_thread("b")
        return Thing(c.a())

    c = containers.DynamicContainer()
    c.a = sync_item(kind, build_a)
    c.b = sync_item(kind, build_b)
    results: dict[str, object] = {}
    with c.scope():
        threads = [
            run_with_copied_context(c.a, results, "a"),
            run_with_copied_context(c.b, results, "b"),
        ]
        assert join_all(threads), "the two threads deadlocked"
    circular = [
        result
        for result in results.values()
        if isinstance(result, errors.ScopeError) and str(result).startswith("Circular dependency")
    ]
    assert circular, results
    assert all(isinstance(result, (Thing, errors.ScopeError)) for result in results.values())


@pytest.mark.xfail(
    strict=True,
    reason=(
        "documented limit: a synchronous creation is not recorded in the context (it would "
        "cost as much as the creation), so a thread that copies the context inside a sync "
        "initializer and resolves the same provider waits for it; joining that thread from "
        "the initializer blocks until the join's timeout"
    ),
)
@pytest.mark.parametrize("kind", SYNC_ITEMS)
def test_worker_thread_started_by_an_initializer_resolving_it_raises(kind):
    """A thread with a copied context, started from a's initializer and resolving a, is a cycle."""
    results: dict[str, object] = {}
    alive: list[bool] = []

    def build_a():
        worker = run_with_copied_context(c.a, results, "worker")
        worker.join(0.5)
        alive.append(worker.is_alive())
        return Thing()

    c = containers.DynamicContainer()
    c.a = sync_item(kind, build_a)
    with c.scope():
        assert isinstance(c.a(), Thing)
    assert alive == [False]
    assert isinstance(results["worker"], errors.ScopeError)
    assert str(results["worker"]).startswith("Circular dependency")


# The event-loop thread never blocks on another thread's creation -------------------------


def slow_in_thread(events: dict[str, threading.Event], released: list[bool]):
    def build():
        events["started"].set()
        released.append(events["release"].wait(TIMEOUT))
        return Thing()

    return build


@pytest.mark.parametrize("kind", SYNC_ITEMS)
async def test_loop_thread_resolving_another_threads_creation_raises_at_once(kind):
    """A sync call on the loop thread, while a worker thread creates the instance, raises ScopeError."""
    events = {"started": threading.Event(), "release": threading.Event()}
    released: list[bool] = []
    c = containers.DynamicContainer()
    c.item = sync_item(kind, slow_in_thread(events, released))
    async with c.scope():
        worker = asyncio.ensure_future(asyncio.to_thread(c.item))
        assert await asyncio.to_thread(events["started"].wait, TIMEOUT)
        try:
            with pytest.raises(errors.ScopeError, match="another thread") as caught:
                c.item()
            assert "async_()" in str(caught.value)
        finally:
            events["release"].set()
        assert isinstance(await asyncio.wait_for(worker, TIMEOUT), Thing)
    assert released == [True]


@pytest.mark.parametrize("kind", SYNC_ITEMS)
async def test_awaiting_async_method_waits_for_another_threads_creation_without_blocking(kind):
    """`await provider.async_()` waits for a worker thread's creation while the loop keeps running."""
    events = {"started": threading.Event(), "release": threading.Event()}
    released: list[bool] = []
    c = containers.DynamicContainer()
    c.item = sync_item(kind, slow_in_thread(events, released))

    async def release_from_the_loop():
        await asyncio.sleep(0)
        events["release"].set()

    async with c.scope():
        worker = asyncio.ensure_future(asyncio.to_thread(c.item))
        assert await asyncio.to_thread(events["started"].wait, TIMEOUT)
        releaser = asyncio.create_task(release_from_the_loop())
        try:
            waited = await asyncio.wait_for(c.item.async_(), TIMEOUT)
        finally:
            events["release"].set()  # only lets a failing test end early; proves nothing
        created = await asyncio.wait_for(worker, TIMEOUT)
        await releaser
    assert released == [True], "the loop was blocked until the worker gave up waiting"
    assert waited is created


# init() under a running loop --------------------------------------------------------------


async def test_init_under_a_running_loop_returns_an_awaitable():
    """scope.init() and scope.shutdown() return awaitables when the calling thread runs a loop."""
    c = containers.DynamicContainer()
    c.item = providers.ScopedFactory(Thing)
    s = c.scope()
    opening = s.init()
    assert inspect.isawaitable(opening)
    await opening
    assert isinstance(c.item(), Thing)
    closing = s.shutdown()
    assert inspect.isawaitable(closing)
    await closing
    assert s.closed


async def test_init_creates_an_eager_sync_resource_with_an_async_dependency():
    """`await scope.init()` creates an eager sync resource whose dependency is async."""
    events: list[str] = []

    async def open_connection():
        events.append("open connection")
        yield "connection"
        events.append("close connection")

    def open_session(connection):
        events.append(f"open session on {connection}")
        yield "session"
        events.append("close session")

    c = containers.DynamicContainer()
    c.connection = providers.ScopedResource(open_connection)
    c.session = providers.ScopedResource(open_session, c.connection, eager=True)

    async def scenario():
        s = c.scope()
        opening = s.init()
        assert inspect.isawaitable(opening)
        await opening
        assert events == ["open connection", "open session on connection"]
        assert await c.session() == "session"
        await s.shutdown()

    await bounded(scenario)
    assert events[2:] == ["close session", "close connection"]
