"""Sync finalisers of an asynchronously closing scope run in a worker thread, off the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from dependency_injector import resources

from dependency_injector_scoped import containers, get_current_scope, providers

TIMEOUT = 5


class Boom(Exception):
    """The exception that ends a scope in these tests."""


@contextlib.asynccontextmanager
async def closed_asynchronously(c: containers.DynamicContainer, how: str):
    """Open a scope of ``c`` and close it asynchronously: `async with`, or `await shutdown()`."""
    if how == "async with":
        async with c.scope() as s:
            yield s
        return
    s = c.scope()
    await s.init()
    try:
        yield s
    except BaseException as error:
        await s.shutdown(error)
        raise
    await s.shutdown()


ASYNC_CLOSINGS = ["async with", "shutdown"]


def recording_kinds(record):
    """Sync finalisers of every kind; each calls ``record()`` while it finalises."""

    def generator():
        yield "generator"
        record()

    @contextlib.contextmanager
    def context_manager():
        yield "context_manager"
        record()

    class Res(resources.Resource):
        def init(self):
            return "resource"

        def shutdown(self, resource):
            record()

    return {"generator": generator, "context_manager": context_manager, "resource": Res}


SYNC_FINALISERS = sorted(recording_kinds(lambda: None))


@pytest.mark.parametrize("how", ASYNC_CLOSINGS)
@pytest.mark.parametrize("kind", SYNC_FINALISERS)
async def test_sync_finaliser_runs_in_a_thread_other_than_the_loops(kind, how):
    """Closing asynchronously runs a sync finaliser in a worker thread, not the event-loop thread."""
    threads: list[int] = []
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(
        recording_kinds(lambda: threads.append(threading.get_ident()))[kind]
    )
    async with closed_asynchronously(c, how):
        assert c.session() == kind
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()


@pytest.mark.parametrize("how", ASYNC_CLOSINGS)
async def test_sync_finaliser_in_a_thread_sees_the_closing_scope_as_current(how):
    """The worker thread running a sync finaliser has the closing scope as its current scope."""
    seen: list[object] = []
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(
        recording_kinds(lambda: seen.append(get_current_scope()))["generator"]
    )
    async with closed_asynchronously(c, how) as s:
        c.session()
    assert seen == [s]


async def test_event_loop_serves_other_tasks_while_a_sync_finaliser_runs():
    """While a sync finaliser blocks, another task on the loop makes progress and unblocks it."""
    finaliser_started = threading.Event()
    other_task_ran = threading.Event()
    unblocked: list[bool] = []

    def open_session():
        yield "session"
        finaliser_started.set()
        unblocked.append(other_task_ran.wait(TIMEOUT))

    async def other_task():
        for _ in range(TIMEOUT * 1000):
            if finaliser_started.is_set():
                other_task_ran.set()
                return
            await asyncio.sleep(0.001)

    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(open_session)
    async with c.scope():
        c.session()
        watcher = asyncio.create_task(other_task())
    await asyncio.wait_for(watcher, TIMEOUT)
    assert unblocked == [True]


async def test_finalisers_run_in_reverse_creation_order_across_sync_and_async():
    """Sync finalisers in the thread and async ones on the loop keep reverse creation order."""
    events: list[str] = []

    def sync_resource(name):
        def initializer():
            yield name
            events.append(f"close {name}")

        return initializer

    def async_resource(name):
        async def initializer():
            yield name
            events.append(f"close {name}")

        return initializer

    c = containers.DynamicContainer()
    c.a_sync = providers.ScopedResource(sync_resource("a_sync"))
    c.b_async = providers.ScopedResource(async_resource("b_async"))
    c.c_sync = providers.ScopedResource(sync_resource("c_sync"))
    c.d_sync = providers.ScopedResource(sync_resource("d_sync"))
    c.e_async = providers.ScopedResource(async_resource("e_async"))
    order = ["a_sync", "b_async", "c_sync", "d_sync", "e_async"]
    async with c.scope():
        for name in order:
            assert await getattr(c, name).async_() == name
    assert events == [f"close {name}" for name in reversed(order)]


async def test_sync_finaliser_in_a_thread_receives_the_scope_exception():
    """The exception ending an `async with` reaches sync (in the thread) and async finalisers alike."""
    received: list[tuple[str, BaseException]] = []

    def open_sync():
        try:
            yield "sync"
        except Boom as exc:
            received.append(("sync", exc))
            raise

    async def open_async():
        try:
            yield "async"
        except Boom as exc:
            received.append(("async", exc))
            raise

    c = containers.DynamicContainer()
    c.a_async = providers.ScopedResource(open_async)
    c.b_sync = providers.ScopedResource(open_sync)
    error = Boom("request failed")
    with pytest.raises(Boom) as caught:
        async with c.scope():
            await c.a_async.async_()
            c.b_sync()
            raise error
    assert caught.value is error
    assert received == [("sync", error), ("async", error)]


async def test_close_in_thread_false_runs_the_sync_finaliser_on_the_loop_thread():
    """`close_in_thread=False` keeps a sync finaliser on the event-loop thread."""
    threads: list[int] = []
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(
        recording_kinds(lambda: threads.append(threading.get_ident()))["generator"],
        close_in_thread=False,
    )
    async with c.scope():
        c.session()
    assert threads == [threading.get_ident()]


def test_sync_scope_runs_sync_finalisers_inline():
    """`with` closes inline: the finaliser runs on the thread that leaves the scope."""
    threads: list[int] = []
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(
        recording_kinds(lambda: threads.append(threading.get_ident()))["generator"]
    )
    with c.scope():
        c.session()
    assert threads == [threading.get_ident()]


async def test_sync_scope_under_a_running_loop_runs_sync_finalisers_inline():
    """A sync `with` scope inside a coroutine still closes inline, on the loop thread."""
    threads: list[int] = []
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(
        recording_kinds(lambda: threads.append(threading.get_ident()))["generator"]
    )
    with c.scope():
        c.session()
    assert threads == [threading.get_ident()]
