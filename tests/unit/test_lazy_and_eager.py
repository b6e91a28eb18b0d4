"""Lazy by default: a ScopedResource is created at its first resolution; `eager=True` at entry."""

from __future__ import annotations

import asyncio
import contextlib
import inspect

import pytest
from dependency_injector import resources

from dependency_injector_scoped import containers, get_current_scope, providers

TIMEOUT = 5


class Boom(Exception):
    """The error an eager resource fails with in these tests."""


def sync_kinds(calls: list[str]) -> dict[str, object]:
    """Sync initializers of every kind, each recording that it was called."""

    def generator():
        calls.append("init")
        yield "value"

    @contextlib.contextmanager
    def context_manager():
        calls.append("init")
        yield "value"

    class Res(resources.Resource):
        def init(self):
            calls.append("init")
            return "value"

        def shutdown(self, resource):
            pass

    def plain():
        calls.append("init")
        return "value"

    return {
        "generator": generator,
        "context_manager": context_manager,
        "resource": Res,
        "plain": plain,
    }


def async_kinds(calls: list[str]) -> dict[str, object]:
    """Async initializers of every kind, each recording that it was called."""

    async def async_generator():
        calls.append("init")
        yield "value"

    @contextlib.asynccontextmanager
    async def async_context_manager():
        calls.append("init")
        yield "value"

    class AsyncRes(resources.AsyncResource):
        async def init(self):
            calls.append("init")
            return "value"

        async def shutdown(self, resource):
            pass

    async def coroutine():
        calls.append("init")
        return "value"

    return {
        "async_generator": async_generator,
        "async_context_manager": async_context_manager,
        "async_resource": AsyncRes,
        "coroutine": coroutine,
    }


SYNC_KINDS = sorted(sync_kinds([]))
ALL_KINDS = sorted([*SYNC_KINDS, *async_kinds([])])


def initializer(kind: str, calls: list[str]):
    return {**sync_kinds(calls), **async_kinds(calls)}[kind]


def container_with(kind: str, calls: list[str], **options: object) -> containers.DynamicContainer:
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(initializer(kind, calls), **options)
    return c


async def resolve(provider):
    """The instance of ``provider``, awaited when the call returns an awaitable."""
    result = provider()
    if inspect.isawaitable(result):
        result = await asyncio.wait_for(result, TIMEOUT)
    return result


# Lazy by default ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_with_does_not_create_an_unresolved_resource(kind):
    """`with container.scope(): pass` never calls a ScopedResource's initializer."""
    calls: list[str] = []
    c = container_with(kind, calls)
    with c.scope():
        assert calls == []
    assert calls == []


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_init_and_shutdown_do_not_create_an_unresolved_resource(kind):
    """scope.init() then scope.shutdown() never call a ScopedResource's initializer."""
    calls: list[str] = []
    c = container_with(kind, calls)
    s = c.scope()
    assert s.init() is None
    assert calls == []
    assert s.shutdown() is None
    assert calls == []


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_async_with_does_not_create_an_unresolved_resource(kind):
    """`async with container.scope(): pass` never calls a sync or async resource's initializer."""
    calls: list[str] = []
    c = container_with(kind, calls)
    async with c.scope():
        assert calls == []
    assert calls == []


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_awaited_init_and_shutdown_do_not_create_an_unresolved_resource(kind):
    """`await scope.init()` then `await scope.shutdown()` never call the initializer."""
    calls: list[str] = []
    c = container_with(kind, calls)
    s = c.scope()
    await s.init()
    assert calls == []
    await s.shutdown()
    assert calls == []


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_sync_resource_is_created_at_its_first_resolution(kind):
    """A sync ScopedResource is created when first resolved in the scope, and only once."""
    calls: list[str] = []
    c = container_with(kind, calls)
    with c.scope():
        assert calls == []
        assert c.session() == "value"
        assert c.session() == "value"
        assert calls == ["init"]


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_resource_is_created_at_its_first_resolution_in_async_with(kind):
    """In `async with`, a ScopedResource is created when first resolved, and only once."""
    calls: list[str] = []
    c = container_with(kind, calls)
    async with c.scope():
        assert calls == []
        assert await resolve(c.session) == "value"
        assert await resolve(c.session) == "value"
        assert calls == ["init"]


# eager=True --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["with", "init"])
@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_eager_resource_is_created_when_a_sync_scope_opens(kind, mode):
    """`eager=True` creates the resource on `with` / `init()`, before anything resolves it."""
    calls: list[str] = []
    c = container_with(kind, calls, eager=True)
    s = c.scope()
    if mode == "with":
        with s:
            assert calls == ["init"]
            assert c.session() == "value"
    else:
        s.init()
        assert calls == ["init"]
        assert c.session() == "value"
        s.shutdown()
    assert calls == ["init"]


@pytest.mark.parametrize("mode", ["async with", "init"])
@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_eager_resource_is_created_when_an_async_scope_opens(kind, mode):
    """`eager=True` creates the resource on `async with` / `await init()`, before any resolution."""
    calls: list[str] = []
    c = container_with(kind, calls, eager=True)
    s = c.scope()
    if mode == "async with":
        async with s:
            assert calls == ["init"]
            assert await resolve(c.session) == "value"
    else:
        await s.init()
        assert calls == ["init"]
        assert await resolve(c.session) == "value"
        await s.shutdown()
    assert calls == ["init"]


# A failing eager resource ------------------------------------------------------------


def failing_opening(events: list[str], *, async_dependency: bool = False):
    """`engine` (eager) is created first, then `session` (eager, needs engine) fails."""

    def open_engine():
        events.append("open engine")
        try:
            yield "engine"
        except BaseException as exc:
            events.append(f"close engine with {exc!r}")
            raise
        events.append("close engine cleanly")

    async def open_async_engine():
        events.append("open engine")
        try:
            yield "engine"
        except BaseException as exc:
            events.append(f"close engine with {exc!r}")
            raise
        events.append("close engine cleanly")

    def open_session(engine):
        events.append(f"open session on {engine}")
        raise Boom("session failed")

    c = containers.DynamicContainer()
    engine = open_async_engine if async_dependency else open_engine
    c.engine = providers.ScopedResource(engine, eager=True)
    c.session = providers.ScopedResource(open_session, c.engine, eager=True)
    return c


EXPECTED_FAILED_OPENING = [
    "open engine",
    "open session on engine",
    "close engine with Boom('session failed')",
]


@pytest.mark.parametrize("mode", ["with", "init"])
def test_failing_eager_resource_fails_a_sync_opening_and_finalises_the_others(mode):
    """A failing eager resource fails `with` / `init()`, finalising the created ones with its error."""
    events: list[str] = []
    c = failing_opening(events)
    s = c.scope()
    with pytest.raises(Boom, match="session failed"):
        if mode == "with":
            with s:
                pytest.fail("the body of a scope that failed to open must not run")
        else:
            s.init()
    assert events == EXPECTED_FAILED_OPENING
    assert get_current_scope() is None
    assert not s.is_open


@pytest.mark.parametrize("async_dependency", [False, True], ids=["sync engine", "async engine"])
@pytest.mark.parametrize("mode", ["async with", "init"])
async def test_failing_eager_resource_fails_an_async_opening_and_finalises_the_others(
    mode, async_dependency
):
    """A failing eager resource fails `async with` / `await init()` and finalises with its error."""
    events: list[str] = []
    c = failing_opening(events, async_dependency=async_dependency)
    s = c.scope()
    with pytest.raises(Boom, match="session failed"):
        if mode == "async with":
            async with s:
                pytest.fail("the body of a scope that failed to open must not run")
        else:
            await s.init()
    assert events == EXPECTED_FAILED_OPENING
    assert get_current_scope() is None
    assert not s.is_open
