"""ScopedResource: every kind of initializer, eager initialisation, explicit init()/shutdown()."""

from __future__ import annotations

import contextlib
import inspect

import pytest
from dependency_injector import resources

from dependency_injector_scoped import containers, errors, providers, scope


def sync_kinds(events: list[str]) -> dict[str, object]:
    """Sync initializers of every kind, each recording its initialisation and finalisation."""

    def generator():
        events.append("init")
        yield "value"
        events.append("close")

    @contextlib.contextmanager
    def context_manager():
        events.append("init")
        yield "value"
        events.append("close")

    class Res(resources.Resource):
        def init(self):
            events.append("init")
            return "value"

        def shutdown(self, resource):
            events.append(f"close {resource}")

    class ResWithError(resources.Resource):
        def init(self):
            events.append("init")
            return "value"

        def shutdown(self, resource, exc):
            events.append(f"close {resource} {exc!r}")

    def plain():
        events.append("init")
        return "value"

    return {
        "generator": generator,
        "context_manager": context_manager,
        "resource": Res,
        "resource_with_error": ResWithError,
        "plain": plain,
    }


def async_kinds(events: list[str]) -> dict[str, object]:
    """Async initializers of every kind, each recording its initialisation and finalisation."""

    async def async_generator():
        events.append("init")
        yield "value"
        events.append("close")

    @contextlib.asynccontextmanager
    async def async_context_manager():
        events.append("init")
        yield "value"
        events.append("close")

    class AsyncRes(resources.AsyncResource):
        async def init(self):
            events.append("init")
            return "value"

        async def shutdown(self, resource):
            events.append(f"close {resource}")

    class AsyncResWithError(resources.AsyncResource):
        async def init(self):
            events.append("init")
            return "value"

        async def shutdown(self, resource, exc):
            events.append(f"close {resource} {exc!r}")

    async def coroutine():
        events.append("init")
        return "value"

    return {
        "async_generator": async_generator,
        "async_context_manager": async_context_manager,
        "async_resource": AsyncRes,
        "async_resource_with_error": AsyncResWithError,
        "coroutine": coroutine,
    }


EXPECTED_CLOSE = {
    "generator": ["close"],
    "context_manager": ["close"],
    "resource": ["close value"],
    "resource_with_error": ["close value None"],
    "plain": [],
    "async_generator": ["close"],
    "async_context_manager": ["close"],
    "async_resource": ["close value"],
    "async_resource_with_error": ["close value None"],
    "coroutine": [],
}


@pytest.mark.parametrize("kind", sorted(sync_kinds([])))
def test_sync_initializer_gives_its_value_and_is_finalised_at_exit(kind):
    """Every sync initializer kind provides its value inside the scope and is finalised on exit."""
    events: list[str] = []
    resource = providers.ScopedResource(sync_kinds(events)[kind])
    c = containers.DynamicContainer()
    with scope(c):
        assert resource() == "value"
        assert resource() == "value"
        assert events == ["init"]
    assert events == ["init", *EXPECTED_CLOSE[kind]]


@pytest.mark.parametrize("kind", sorted(async_kinds([])))
async def test_async_initializer_gives_its_value_and_is_finalised_at_exit(kind):
    """Every async initializer kind provides its value inside the scope and is finalised on exit."""
    events: list[str] = []
    resource = providers.ScopedResource(async_kinds(events)[kind])
    c = containers.DynamicContainer()
    async with scope(c):
        assert await resource() == "value"
        again = resource()
        assert inspect.isawaitable(again)
        assert await again == "value"
        assert events == ["init"]
    assert events == ["init", *EXPECTED_CLOSE[kind]]


@pytest.mark.parametrize("kind", sorted(sync_kinds([])))
async def test_sync_initializer_works_in_an_async_scope(kind):
    """Sync initializers are created synchronously and finalised in an `async with` scope too."""
    events: list[str] = []
    resource = providers.ScopedResource(sync_kinds(events)[kind])
    c = containers.DynamicContainer()
    async with scope(c):
        assert resource() == "value"
    assert events == ["init", *EXPECTED_CLOSE[kind]]


def test_initializer_receives_injected_arguments():
    """Positional and keyword injections reach the initializer."""
    seen = []

    def open_thing(a, b, *, c):
        seen.append((a, b, c))
        yield (a, b, c)

    class Local(containers.DeclarativeContainer):
        config = providers.Object(2)
        thing = providers.ScopedResource(open_thing, 1, config, c=providers.Callable(lambda: 3))

    with Local().scope() as s:
        assert s.container.thing() == (1, 2, 3)
    assert seen == [(1, 2, 3)]


def test_scope_entry_initialises_eager_resources_never_resolved():
    """Entering a scope calls the initializers of the container's eager resources only; lazy ones wait."""
    events: list[str] = []

    def open_session():
        events.append("open")
        yield "session"
        events.append("close")

    def open_cache():
        events.append("open cache")
        yield "cache"

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session, eager=True)
        cache = providers.ScopedResource(open_cache)

    c = Local()
    with c.scope() as s:
        assert events == ["open"]
        assert c.session in s
        assert c.cache not in s
    assert events == ["open", "close"]


async def test_async_scope_entry_initialises_eager_async_resources():
    """`async with` initialises eager async resources on entry; calls still return awaitables of that instance."""
    events: list[str] = []

    async def open_session():
        events.append("open")
        yield "session"
        events.append("close")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session, eager=True)

    c = Local()
    async with c.scope() as s:
        assert events == ["open"]
        assert c.session in s
        result = c.session()
        assert inspect.isawaitable(result)
        assert await result == "session"
        assert events == ["open"]
    assert events == ["open", "close"]


def test_overridden_resource_initializer_is_never_called():
    """Eager initialisation skips an overridden provider: its initializer never runs."""
    events: list[str] = []

    def open_session():
        events.append("open")
        yield "real"

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session, eager=True)

    c = Local()
    with c.session.override(providers.Object("fake")):
        with c.scope():
            assert c.session() == "fake"
    assert events == []


def test_resource_overridden_after_first_scope_is_skipped_too():
    """An override added after the container's first scope is also honoured on entry."""
    events: list[str] = []

    def open_session():
        events.append("open")
        yield "real"

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session, eager=True)

    c = Local()
    with c.scope():
        pass
    assert events == ["open"]
    with c.session.override(providers.Object("fake")), c.scope():
        assert c.session() == "fake"
    assert events == ["open"]


def test_unnamed_scope_does_not_initialise_named_resources():
    """An unnamed scope initialises its unnamed eager resources only, a named scope its own only."""
    events: list[str] = []

    def make(label):
        def initializer():
            events.append(label)
            yield label

        return initializer

    class Local(containers.DeclarativeContainer):
        app_thing = providers.ScopedResource(make("app"), scope="app", eager=True)
        request_thing = providers.ScopedResource(make("request"), eager=True)

    c = Local()
    with c.scope("app"):
        assert events == ["app"]
        with c.scope():
            assert events == ["app", "request"]


def test_dependent_resources_are_initialised_once_on_entry():
    """An eager resource depending on another eager one is initialised once on entry, after its dependency."""
    events: list[str] = []

    def open_engine():
        events.append("engine")
        yield "engine"

    def open_session(engine):
        events.append(f"session({engine})")
        yield "session"

    class Local(containers.DeclarativeContainer):
        a_session = providers.ScopedResource(open_session, providers.Object(None), eager=True)
        z_engine = providers.ScopedResource(open_engine, eager=True)

    Local.a_session.set_args(Local.z_engine)
    c = Local()
    with c.scope():
        assert events == ["engine", "session(engine)"]
        assert c.a_session() == "session"
    assert events == ["engine", "session(engine)"]


def test_explicit_init_and_shutdown_return_none_without_a_running_loop():
    """Without a running event loop, init()/shutdown() work at once and return None (not an awaitable)."""
    events: list[str] = []

    def open_session():
        events.append("open")
        yield "session"
        events.append("close")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session, eager=True)

    s = Local().scope()
    assert s.init() is None
    assert events == ["open"]
    assert s.container.session() == "session"
    assert s.shutdown() is None
    assert events == ["open", "close"]


async def test_explicit_init_and_shutdown_return_awaitables_under_a_running_loop():
    """Under a running event loop, init()/shutdown() return awaitables that open and close the scope."""
    events: list[str] = []

    async def open_session():
        events.append("open")
        yield "session"
        events.append("close")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session, eager=True)

    s = Local().scope()
    pending = s.init()
    assert inspect.isawaitable(pending)
    await pending
    assert events == ["open"]
    assert await s.container.session() == "session"
    closing = s.shutdown()
    assert inspect.isawaitable(closing)
    assert events == ["open"]
    await closing
    assert events == ["open", "close"]


async def test_explicit_shutdown_of_lazy_async_resource_returns_an_awaitable():
    """shutdown() returns an awaitable when an async resource was created lazily in the scope."""
    events: list[str] = []

    async def open_session():
        yield "session"
        events.append("close")

    session = providers.ScopedResource(open_session)
    s = scope(containers.DynamicContainer())
    opening = s.init()
    assert inspect.isawaitable(opening)
    await opening
    assert events == []
    assert await session() == "session"
    closing = s.shutdown()
    assert inspect.isawaitable(closing)
    await closing
    assert events == ["close"]


def test_init_resources_outside_a_scope_does_nothing():
    """container.init_resources() outside a scope leaves scoped resources uninitialised."""
    events: list[str] = []

    def open_session():
        events.append("open")
        yield "session"

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)

    c = Local()
    c.init_resources()
    c.shutdown_resources()
    assert events == []
    assert c.session.initialized is False


def test_resource_init_inside_a_scope_uses_that_scope():
    """ScopedResource.init() inside a scope creates the scope's instance; shutdown() leaves it to the scope."""
    events: list[str] = []

    def open_session():
        events.append("open")
        yield object()
        events.append("close")

    session = providers.ScopedResource(open_session)
    with scope(containers.DynamicContainer()) as s:
        created = session.init()
        assert session in s
        assert session() is created
        assert session.shutdown() is None
        assert events == ["open"]
        assert session.initialized is False
    assert events == ["open", "close"]


def test_plain_callable_returning_a_context_manager_is_entered_and_exited():
    """A plain callable returning a context manager provides what __enter__ returns and exits it."""
    events: list[str] = []

    class Manager:
        def __enter__(self):
            events.append("enter")
            return "entered"

        def __exit__(self, *exc_info):
            events.append("exit")

    resource = providers.ScopedResource(lambda: Manager())
    with scope(containers.DynamicContainer()):
        assert resource() == "entered"
    assert events == ["enter", "exit"]


async def test_plain_callable_returning_an_async_context_manager_is_entered_and_exited():
    """A plain callable returning an async context manager is entered and exited in `async with`."""
    events: list[str] = []

    class Manager:
        async def __aenter__(self):
            events.append("enter")
            return "entered"

        async def __aexit__(self, *exc_info):
            events.append("exit")

    resource = providers.ScopedResource(lambda: Manager())
    async with scope(containers.DynamicContainer()):
        assert await resource() == "entered"
        again = resource()
        assert inspect.isawaitable(again)
        assert await again == "entered"
    assert events == ["enter", "exit"]


async def test_explicit_init_and_shutdown_agree_when_the_async_resource_is_overridden():
    """With its only async resource overridden, init() and shutdown() under a running loop both return awaitables."""

    async def open_connection():
        yield "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.ScopedResource(open_connection, eager=True)

    c = Local()
    with c.connection.override(providers.Object("fake")):
        s = c.scope()
        opening = s.init()
        assert inspect.isawaitable(opening)
        await opening
        result = c.connection()
        assert inspect.isawaitable(result)
        assert await result == "fake"
        closing = s.shutdown()
        assert inspect.isawaitable(closing)
        await closing
        assert s.closed


def test_provider_added_to_a_dynamic_container_is_initialised_by_the_next_scope():
    """An eager ScopedResource assigned after the container's first scope is initialised by the next one and named."""
    events: list[str] = []

    def open_extra():
        events.append("open")
        yield "extra"

    c = containers.DynamicContainer()
    with scope(c):
        pass
    c.extra = providers.ScopedResource(open_extra, eager=True)
    with scope(c) as s:
        assert events == ["open"]
        assert c.extra in s
    with pytest.raises(errors.NoActiveScopeError, match="'extra'"):
        c.extra()
    del c.extra
    with scope(c):
        pass
    assert events == ["open"]


def test_scope_name_property_is_exposed():
    """ScopedResource and ScopedFactory expose the scope name they bind to."""
    assert providers.ScopedResource(list, scope="app").scope_name == "app"
    assert providers.ScopedResource(list).scope_name is None
    assert providers.ScopedFactory(list, scope="job").scope_name == "job"


def test_is_async_tells_known_async_initializers():
    """is_async is True for async generator, coroutine and AsyncResource initializers only."""

    async def agen():
        yield 1

    async def coro():
        return 1

    class AsyncRes(resources.AsyncResource):
        async def init(self):
            return 1

    def gen():
        yield 1

    assert all(providers.ScopedResource(kind).is_async for kind in (agen, coro, AsyncRes))
    assert not any(providers.ScopedResource(kind).is_async for kind in (gen, list))


def test_resource_subclass_receives_injected_arguments():
    """A Resource subclass initializer gets the injected arguments in init()."""
    seen = []

    class Res(resources.Resource):
        def init(self, dsn, *, timeout):
            seen.append((dsn, timeout))
            return f"{dsn}/{timeout}"

    res = providers.ScopedResource(Res, providers.Object("db"), timeout=3)
    with scope(containers.DynamicContainer()):
        assert res() == "db/3"
    assert seen == [("db", 3)]


def test_failing_initializer_registers_no_finaliser_and_is_retried():
    """A generator failing before its yield propagates, is not finalised, and the next resolution retries."""
    events: list[str] = []

    def open_flaky():
        events.append("open")
        if events.count("open") == 1:
            raise ConnectionError("first attempt fails")
        yield "connection"
        events.append("close")

    flaky = providers.ScopedResource(open_flaky)
    with scope(containers.DynamicContainer()) as s:
        with pytest.raises(ConnectionError):
            flaky()
        assert flaky not in s
        assert flaky() == "connection"
    assert events == ["open", "open", "close"]


def test_resource_overridden_by_another_scoped_resource_uses_only_the_override():
    """Overridden by a ScopedResource, the original initializer never runs; the override gives one finalised instance per scope."""
    events: list[str] = []

    def open_real():
        events.append("open real")
        yield "real"

    def open_fake():
        events.append("open fake")
        yield object()
        events.append("close fake")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_real)

    c = Local()
    with c.session.override(providers.ScopedResource(open_fake)):
        with c.scope():
            first = c.session()
            assert c.session() is first
        with c.scope():
            assert c.session() is not first
    assert "open real" not in events
    assert events == ["open fake", "close fake", "open fake", "close fake"]


async def test_async_resource_overridden_by_a_sync_one_opens_a_sync_scope():
    """An eager async resource overridden by a sync ScopedResource opens a sync scope; it stays awaitable, of the fake."""
    events: list[str] = []

    async def open_real():
        events.append("open real")
        yield "real"

    def open_fake():
        events.append("open fake")
        yield "fake"
        events.append("close fake")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_real, eager=True)

    c = Local()
    with c.session.override(providers.ScopedResource(open_fake)):
        with c.scope():
            result = c.session()
            assert inspect.isawaitable(result)
            assert await result == "fake"
        assert events == ["open fake", "close fake"]
