"""Never leaks: a closed scope drops what it held, no cache keeps user classes or threads alive."""

from __future__ import annotations

import contextvars
import gc
import threading
import tracemalloc
import weakref

import pytest

from dependency_injector_scoped import containers, providers

TIMEOUT = 5


class Request:
    """What a framework passes in ``values``: it must not outlive its scope."""


class Session:
    pass


class Repo:
    def __init__(self, session: object) -> None:
        self.session = session


def request_container() -> containers.DynamicContainer:
    c = containers.DynamicContainer()
    c.request = providers.ScopedValue("request")
    c.session = providers.ScopedFactory(Session)
    return c


# A closed scope drops its values and instances ----------------------------------------


@pytest.mark.parametrize("mode", ["with", "async with"])
async def test_closed_scope_drops_its_values_while_the_token_lives(mode):
    """After close, the request object given in `values` is freed though the Scope is still held."""
    c = request_container()
    request = Request()
    request_ref = weakref.ref(request)
    s = c.scope(values={"request": request})
    del request
    if mode == "with":
        with s:
            assert c.request() is request_ref()
    else:
        async with s:
            assert c.request() is request_ref()
    gc.collect()
    assert request_ref() is None
    assert s.values == {}


@pytest.mark.parametrize("mode", ["with", "async with"])
async def test_closed_scope_drops_its_instances_while_the_token_lives(mode):
    """After close, the scope's instances are freed though the Scope is still held."""
    c = request_container()
    s = c.scope()
    if mode == "with":
        with s:
            session_ref = weakref.ref(c.session())
    else:
        async with s:
            session_ref = weakref.ref(c.session())
    gc.collect()
    assert session_ref() is None
    assert s.closed


# Awaitable detection keeps no class alive ------------------------------------------------


@pytest.mark.parametrize("mode", ["with", "async with"])
async def test_awaitable_detection_keeps_no_user_class_alive(mode):
    """Classes whose instances a plain-callable ScopedResource returned are freed afterwards."""
    class_refs = []
    for index in range(100):
        cls = type(f"Throwaway{index}", (), {})
        class_refs.append(weakref.ref(cls))
        c = containers.DynamicContainer()
        c.thing = providers.ScopedResource(cls)
        if mode == "with":
            with c.scope():
                assert type(c.thing()) is cls
        else:
            async with c.scope():
                assert type(c.thing()) is cls
        del cls, c
    gc.collect()
    alive = [ref().__name__ for ref in class_refs if ref() is not None]
    assert alive == []


# Markers of finished threads are freed ------------------------------------------------------


def objects_of_this_package() -> int:
    """How many gc-tracked objects of this package's own types exist."""
    return sum(
        1
        for obj in gc.get_objects()
        if str(getattr(type(obj), "__module__", "")).startswith("dependency_injector_scoped")
    )


def test_finished_threads_leave_no_creation_markers_behind():
    """200 threads that each created an instance, then ended, leave none of our objects behind."""
    c = containers.DynamicContainer()
    c.session = providers.ScopedFactory(Session)
    with c.scope():
        c.session()
    gc.collect()
    before = objects_of_this_package()
    # All alive at once, so that every thread has an identity of its own.
    barrier = threading.Barrier(200, timeout=TIMEOUT)

    def request():
        barrier.wait()
        with c.scope():
            c.session()

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(request,), daemon=True)
        for _ in range(200)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    del threads
    gc.collect()
    assert objects_of_this_package() - before == 0


# 100,000 scopes do not grow memory -----------------------------------------------------------


async def open_async_session():
    yield Session()


def open_sync_session():
    yield Session()


@pytest.mark.parametrize("mode", ["with", "async with"])
async def test_hundred_thousand_scopes_do_not_grow_memory(mode):
    """Traced memory after 100,000 scopes (session + repo each) is what it was after 10,000."""
    c = containers.DynamicContainer()
    if mode == "with":
        c.session = providers.ScopedResource(open_sync_session)
    else:
        c.session = providers.ScopedResource(open_async_session)
    c.repo = providers.ScopedFactory(Repo, c.session)

    async def requests(count: int) -> None:
        for _ in range(count):
            if mode == "with":
                with c.scope():
                    c.repo()
            else:
                async with c.scope():
                    await c.repo()

    tracemalloc.start()
    try:
        await requests(10_000)
        gc.collect()
        warm, _ = tracemalloc.get_traced_memory()
        await requests(90_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - warm < 200 * 1024


@pytest.mark.parametrize("awaited", ["created", "existing"])
async def test_an_awaited_instance_is_freed_with_its_scope(awaited):
    """Nothing behind an await (its StopIteration included) keeps the result after the scope closed."""

    class Connection:
        pass

    async def connect():
        yield Connection()

    c = containers.DynamicContainer()
    c.connection = providers.ScopedResource(connect)
    async with c.scope():
        connection = await c.connection()
        if awaited == "existing":
            assert await c.connection() is connection
        connection_ref = weakref.ref(connection)
        del connection
    gc.collect()
    assert connection_ref() is None
