"""Errors: no scope, closed scope, and the ways a scope can be misused."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import sys
import threading

import dependency_injector.errors
import pytest

from dependency_injector_scoped import containers, errors, get_current_scope, providers, scope

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup


class Repo:
    def __init__(self, session: object) -> None:
        self.session = session


def counting(calls: list[str], label: str):
    """A generator initializer that records each time its body runs."""

    def initializer():
        calls.append(label)
        yield label

    return initializer


# Error classes ----------------------------------------------------------------


def test_every_error_subclasses_the_upstream_error():
    """Each error of the package is a dependency_injector.errors.Error and a ScopeError."""
    for cls in (
        errors.ScopeError,
        errors.NoActiveScopeError,
        errors.ScopeClosedError,
        errors.MissingScopeValueError,
        errors.CaptiveDependencyError,
    ):
        assert issubclass(cls, dependency_injector.errors.Error)
        assert issubclass(cls, errors.ScopeError)
    assert issubclass(errors.FinalizerError, dependency_injector.errors.Error)
    assert issubclass(errors.FinalizerError, ExceptionGroup)


def test_no_active_scope_and_scope_closed_are_distinct():
    """NoActiveScopeError and ScopeClosedError do not derive from each other."""
    assert not issubclass(errors.NoActiveScopeError, errors.ScopeClosedError)
    assert not issubclass(errors.ScopeClosedError, errors.NoActiveScopeError)


# No matching scope -------------------------------------------------------------


def test_unnamed_resource_outside_a_scope_raises_before_creating_anything():
    """Resolving an unnamed ScopedResource with no scope open raises NoActiveScopeError; nothing is created."""
    calls: list[str] = []

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(counting(calls, "session"))

    c = Local()
    with pytest.raises(errors.NoActiveScopeError) as caught:
        c.session()
    assert calls == []
    message = str(caught.value)
    assert "'session'" in message and "scope" in message


def test_dependants_outside_a_scope_create_nothing():
    """An upstream Factory and a ScopedFactory over a scoped session create nothing outside a scope."""
    calls: list[str] = []
    built: list[object] = []

    def make_repo(session):
        built.append(session)
        return Repo(session)

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(counting(calls, "session"))
        repo = providers.Factory(make_repo, session=session)
        users = providers.ScopedFactory(make_repo, session=session)

    c = Local()
    with pytest.raises(errors.NoActiveScopeError, match="'session'"):
        c.repo()
    with pytest.raises(errors.NoActiveScopeError, match="'users'"):
        c.users()
    assert calls == []
    assert built == []


def test_scoped_factory_outside_a_scope_does_not_resolve_its_dependencies():
    """A ScopedFactory outside a scope raises before calling any of its dependencies."""
    calls: list[str] = []

    class Local(containers.DeclarativeContainer):
        config = providers.Callable(lambda: calls.append("config") or "config")
        users = providers.ScopedFactory(Repo, session=config)

    c = Local()
    with pytest.raises(errors.NoActiveScopeError) as caught:
        c.users()
    assert calls == []
    assert "'users'" in str(caught.value) and "scope" in str(caught.value)


def test_named_provider_without_its_scope_raises_before_creating_anything():
    """A provider bound to scope 'app' raises NoActiveScopeError inside an unnamed scope; nothing is created."""
    calls: list[str] = []

    class Local(containers.DeclarativeContainer):
        pool = providers.ScopedResource(counting(calls, "pool"), scope="app")

    c = Local()
    with c.scope():
        with pytest.raises(errors.NoActiveScopeError) as caught:
            c.pool()
    with pytest.raises(errors.NoActiveScopeError):
        c.pool()
    assert calls == []
    message = str(caught.value)
    assert "'pool'" in message and "'app'" in message and "scope" in message


def test_named_provider_resolved_in_another_named_scope_raises():
    """A provider bound to 'app' is not satisfied by an open scope named 'job'."""

    class Local(containers.DeclarativeContainer):
        pool = providers.ScopedFactory(object, scope="app")

    c = Local()
    with c.scope("job"):
        with pytest.raises(errors.NoActiveScopeError, match="'app'"):
            c.pool()


# Resolution through a closed scope ---------------------------------------------


async def test_task_that_outlives_its_scope_gets_scope_closed_error():
    """A task created inside a scope and resolving after it closed raises ScopeClosedError."""
    calls: list[str] = []
    go = asyncio.Event()

    class Local(containers.DeclarativeContainer):
        users = providers.ScopedFactory(lambda: calls.append("users") or object())

    c = Local()

    async def late():
        await go.wait()
        return c.users()

    async with c.scope():
        task = asyncio.create_task(late())
        await asyncio.sleep(0)
    go.set()
    with pytest.raises(errors.ScopeClosedError) as caught:
        await asyncio.wait_for(task, 5)
    assert calls == []
    message = str(caught.value)
    assert "'users'" in message and "scope" in message


def test_thread_with_a_copied_context_after_close_gets_scope_closed_error():
    """A thread running a context copied inside a closed scope raises ScopeClosedError."""
    calls: list[str] = []

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(counting(calls, "session"))

    c = Local()
    with c.scope():
        context = contextvars.copy_context()
    outcome: list[BaseException] = []

    def run():
        try:
            context.run(c.session)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    [error] = outcome
    assert isinstance(error, errors.ScopeClosedError)
    assert "'session'" in str(error) and "scope" in str(error)
    assert calls == []


def test_named_provider_through_a_closed_named_scope_gets_scope_closed_error():
    """A provider bound to 'app' resolved in a context copied inside the closed app scope raises ScopeClosedError."""

    class Local(containers.DeclarativeContainer):
        pool = providers.ScopedFactory(object, scope="app")

    c = Local()
    with c.scope("app"), c.scope():
        context = contextvars.copy_context()
    with pytest.raises(errors.ScopeClosedError) as caught:
        context.run(c.pool)
    assert "'pool'" in str(caught.value) and "'app'" in str(caught.value)


async def test_instances_are_dropped_when_the_scope_closes():
    """A task holding a closed scope cannot reach the instances the scope created."""

    class Local(containers.DeclarativeContainer):
        users = providers.ScopedFactory(object)

    c = Local()
    async with c.scope() as s:
        c.users()
        assert c.users in s
    assert c.users not in s


# Async work in a synchronous scope ------------------------------------------------


def test_lazy_async_resource_in_a_sync_scope_asks_for_async_with():
    """An async ScopedResource resolved in a sync scope raises ScopeError telling to use `async with`."""
    calls: list[str] = []

    async def open_connection():
        calls.append("open")
        yield "connection"

    connection = providers.ScopedResource(open_connection)
    with scope(containers.DynamicContainer()) as s:
        with pytest.raises(errors.ScopeError, match="async with"):
            connection()
        assert connection not in s
    assert calls == []


def test_scoped_factory_with_an_async_dependency_in_a_sync_scope_asks_for_async_with():
    """A ScopedFactory whose dependency must be awaited raises ScopeError in a sync scope, without leaking a coroutine."""
    calls: list[str] = []

    async def connect():
        calls.append("connect")
        return "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        users = providers.ScopedFactory(Repo, session=connection)

    c = Local()
    with c.scope() as s:
        with pytest.raises(errors.ScopeError, match="async with") as caught:
            c.users()
        assert "'users'" in str(caught.value)
        assert c.users not in s
    assert calls == []


def test_resource_with_an_async_dependency_in_a_sync_scope_asks_for_async_with():
    """A sync ScopedResource whose dependency must be awaited raises ScopeError in a sync scope, without leaking a coroutine."""
    calls: list[str] = []

    async def connect():
        calls.append("connect")
        return "connection"

    def open_session(connection):
        calls.append("session")
        yield connection

    session = providers.ScopedResource(open_session, providers.Coroutine(connect))
    with scope(containers.DynamicContainer()) as s:
        with pytest.raises(errors.ScopeError, match="async with"):
            session()
        assert session not in s
    gc.collect()
    assert calls == []


def test_callable_returning_a_coroutine_in_a_sync_scope_asks_for_async_with():
    """A plain callable returning a coroutine raises ScopeError in a sync scope and the coroutine is closed."""

    async def connect():
        return "connection"

    connection = providers.ScopedResource(lambda: connect())
    with scope(containers.DynamicContainer()):
        with pytest.raises(errors.ScopeError, match="async with"):
            connection()


def test_eager_async_resource_refuses_a_sync_scope_before_anything_opens():
    """Entering a sync scope with an eager async resource raises ScopeError and opens nothing."""
    calls: list[str] = []

    async def open_connection():
        calls.append("connection")
        yield "connection"

    class Local(containers.DeclarativeContainer):
        a_session = providers.ScopedResource(counting(calls, "session"), eager=True)
        b_connection = providers.ScopedResource(open_connection, eager=True)

    c = Local()
    s = c.scope()
    with pytest.raises(errors.ScopeError, match="async with") as caught:
        with s:
            pytest.fail("the body of a refused scope must not run")
    assert "'b_connection'" in str(caught.value)
    assert calls == []
    assert get_current_scope() is None
    assert not s.is_open


async def test_eager_async_resource_refusal_leaves_an_async_scope_usable():
    """After a refused sync scope, `async with` on the same container initialises the eager resource on entry."""
    calls: list[str] = []

    async def open_connection():
        calls.append("connection")
        yield "connection"

    class Local(containers.DeclarativeContainer):
        connection = providers.ScopedResource(open_connection, eager=True)

    c = Local()
    with pytest.raises(errors.ScopeError):
        with c.scope():
            pass
    assert get_current_scope() is None
    async with c.scope() as s:
        assert calls == ["connection"]
        assert c.connection in s
        assert await c.connection() == "connection"
    assert calls == ["connection"]


def test_eager_resource_returning_an_async_context_manager_unwinds_a_sync_scope():
    """A sync scope whose eager resource turns out async raises ScopeError, finalises what it created and closes."""
    events: list[str] = []

    def open_session():
        events.append("open session")
        try:
            yield "session"
        except BaseException as exc:
            events.append(f"rollback {type(exc).__name__}")
            raise

    @contextlib.asynccontextmanager
    async def open_connection():
        events.append("open connection")
        yield "connection"

    class Local(containers.DeclarativeContainer):
        a_session = providers.ScopedResource(open_session, eager=True)
        b_connection = providers.ScopedResource(lambda: open_connection(), eager=True)

    c = Local()
    s = c.scope()
    with pytest.raises(errors.ScopeError, match="async with") as caught:
        with s:
            pytest.fail("the body of a refused scope must not run")
    assert "'b_connection'" in str(caught.value)
    assert events == ["open session", "rollback ScopeError"]
    assert get_current_scope() is None
    assert s.closed


async def test_failing_eager_async_resource_unwinds_the_scope():
    """An eager async resource failing on entry finalises those created before it, with its error."""
    events: list[str] = []

    async def open_first():
        events.append("open first")
        try:
            yield "first"
        except BaseException as exc:
            events.append(f"rollback first {type(exc).__name__}")
            raise

    async def open_failing():
        raise ValueError("cannot connect")
        yield  # pragma: no cover - makes this an async generator function

    class Local(containers.DeclarativeContainer):
        a_first = providers.ScopedResource(open_first, eager=True)
        b_failing = providers.ScopedResource(open_failing, eager=True)

    c = Local()
    s = c.scope()
    with pytest.raises(ValueError, match="cannot connect"):
        async with s:
            pytest.fail("the body of a failed scope must not run")
    assert events == ["open first", "rollback first ValueError"]
    assert get_current_scope() is None
    assert s.closed


async def test_failing_eager_async_resource_leaves_no_unawaited_initializer():
    """When an eager async resource fails on entry, later async initializers are not left unawaited."""

    async def open_failing():
        raise ValueError("cannot connect")
        yield  # pragma: no cover - makes this an async generator function

    async def load_settings():
        return "settings"

    class Local(containers.DeclarativeContainer):
        a_failing = providers.ScopedResource(open_failing, eager=True)
        b_settings = providers.ScopedResource(load_settings, eager=True)

    c = Local()
    with pytest.raises(ValueError, match="cannot connect"):
        async with c.scope():
            pytest.fail("the body of a failed scope must not run")
    gc.collect()
    assert get_current_scope() is None


async def test_sync_scope_inside_an_async_named_scope_is_allowed():
    """A sync unnamed scope opens inside an async 'app' scope; its eager async resource stays awaitable there.

    An unnamed dependant that needs an await is created in the sync scope, so it asks for `async with`.
    """

    async def open_pool():
        yield "pool"

    class Local(containers.DeclarativeContainer):
        pool = providers.ScopedResource(open_pool, scope="app", eager=True)
        users = providers.ScopedFactory(Repo, session=pool)

    c = Local()
    async with c.scope("app") as app:
        assert c.pool in app
        with c.scope() as inner:
            assert get_current_scope() is inner
            assert await c.pool() == "pool"
            with pytest.raises(errors.ScopeError, match="async with") as caught:
                c.users()
            assert "'users'" in str(caught.value)
            assert c.users not in inner
        assert (await c.users()).session == "pool"


# Misusing a scope token --------------------------------------------------------------


def test_reentering_an_open_scope_raises():
    """Entering a scope token that is open raises ScopeError; the scope stays usable."""

    class Local(containers.DeclarativeContainer):
        users = providers.ScopedFactory(object)

    c = Local()
    with c.scope() as s:
        with pytest.raises(errors.ScopeError):
            with s:
                pytest.fail("a token opens once")
        assert s.is_open
        assert get_current_scope() is s
        assert c.users() is c.users()


def test_reentering_a_closed_scope_raises():
    """Entering a closed scope token again raises ScopeError."""
    s = scope(containers.DynamicContainer())
    with s:
        pass
    with pytest.raises(errors.ScopeError):
        with s:
            pytest.fail("a token opens once")
    with pytest.raises(errors.ScopeError):
        s.init()
    assert get_current_scope() is None


async def test_reentering_a_closed_scope_with_async_with_raises():
    """`async with` on a closed scope token raises ScopeError."""
    s = scope(containers.DynamicContainer())
    async with s:
        pass
    with pytest.raises(errors.ScopeError):
        async with s:
            pytest.fail("a token opens once")


def test_shutdown_before_init_and_twice_raises():
    """shutdown() of a scope never opened, or already closed, raises ScopeError."""
    s = scope(containers.DynamicContainer())
    with pytest.raises(errors.ScopeError, match="not open"):
        s.shutdown()
    s.init()
    s.shutdown()
    with pytest.raises(errors.ScopeError, match="already closed"):
        s.shutdown()


def test_closing_an_outer_scope_while_an_inner_one_is_open_raises():
    """shutdown() of a scope that is not the current one raises ScopeError; nested ones close first."""
    outer = scope(containers.DynamicContainer())
    inner = scope(containers.DynamicContainer())
    outer.init()
    inner.init()
    with pytest.raises(errors.ScopeError):
        outer.shutdown()
    assert outer.is_open
    inner.shutdown()
    outer.shutdown()
    assert get_current_scope() is None


async def test_closing_a_scope_from_a_child_task_raises():
    """A child task cannot close its parent's scope; the owner still closes it and finalises."""
    events: list[str] = []

    def open_session():
        yield "session"
        events.append("close")

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)

    c = Local()

    async def close_from_child(s):
        await s.shutdown()

    async with c.scope() as s:
        assert c.session() == "session"
        with pytest.raises(errors.ScopeError, match="context"):
            await asyncio.create_task(close_from_child(s))
        assert s.is_open
        assert c.session in s
        assert c.session() == "session"
        assert events == []
    assert s.closed
    assert events == ["close"]


# Generators that do not yield exactly once --------------------------------------------


def test_generator_yielding_twice_fails_at_exit():
    """A generator initializer yielding twice makes the scope exit raise FinalizerError wrapping ScopeError."""

    def twice():
        yield 1
        yield 2

    class Local(containers.DeclarativeContainer):
        twice_res = providers.ScopedResource(twice)

    c = Local()
    with pytest.raises(errors.FinalizerError) as caught:
        with c.scope():
            assert c.twice_res() == 1
    [error] = caught.value.exceptions
    assert isinstance(error, errors.ScopeError)
    assert "'twice_res'" in str(error)


async def test_async_generator_yielding_twice_fails_at_exit():
    """An async generator initializer yielding twice makes the scope exit raise FinalizerError wrapping ScopeError."""

    async def twice():
        yield 1
        yield 2

    class Local(containers.DeclarativeContainer):
        twice_res = providers.ScopedResource(twice)

    c = Local()
    with pytest.raises(errors.FinalizerError) as caught:
        async with c.scope():
            assert await c.twice_res() == 1
    [error] = caught.value.exceptions
    assert isinstance(error, errors.ScopeError)


def test_generator_yielding_again_after_the_scope_exception_adds_a_note():
    """A generator that yields again after the scope's exception is thrown in is reported on that exception."""

    def swallowing():
        try:
            yield 1
        except Exception:
            yield 2

    class Local(containers.DeclarativeContainer):
        stubborn = providers.ScopedResource(swallowing)

    c = Local()
    error = RuntimeError("request failed")
    with pytest.raises(RuntimeError) as caught:
        with c.scope():
            assert c.stubborn() == 1
            raise error
    assert caught.value is error
    assert any("'stubborn'" in note for note in error.__notes__)


def test_generator_never_yielding_fails_at_creation():
    """A generator initializer that returns without yielding raises ScopeError when created."""

    def never():
        return
        yield  # pragma: no cover - makes this a generator function

    empty = providers.ScopedResource(never)
    with scope(containers.DynamicContainer()) as s:
        with pytest.raises(errors.ScopeError, match="without yielding"):
            empty()
        assert empty not in s


async def test_async_generator_never_yielding_fails_at_creation():
    """An async generator initializer that returns without yielding raises ScopeError when created."""

    async def never():
        return
        yield  # pragma: no cover - makes this an async generator function

    empty = providers.ScopedResource(never)
    async with scope(containers.DynamicContainer()):
        with pytest.raises(errors.ScopeError, match="without yielding"):
            await empty()


def test_never_yielding_eager_resource_fails_on_entry():
    """An eager generator that never yields makes entering the scope raise ScopeError and leaves no scope open."""

    def never():
        return
        yield  # pragma: no cover - makes this a generator function

    class Local(containers.DeclarativeContainer):
        empty = providers.ScopedResource(never, eager=True)

    c = Local()
    with pytest.raises(errors.ScopeError, match="'empty'"):
        with c.scope():
            pytest.fail("the body of a failed scope must not run")
    assert get_current_scope() is None


# Captive dependencies ------------------------------------------------------------


def test_singleton_depending_on_a_scoped_provider_is_rejected_at_the_first_scope():
    """A Singleton reaching a scoped provider raises CaptiveDependencyError when a scope is created."""

    class Local(containers.DeclarativeContainer):
        users = providers.ScopedFactory(object)
        cache = providers.Singleton(Repo, session=users)

    c = Local()
    with pytest.raises(errors.CaptiveDependencyError) as caught:
        c.scope()
    assert "'cache'" in str(caught.value) and "'users'" in str(caught.value)


# Creations that finish after their scope closed ------------------------------------


async def test_async_resource_finishing_after_close_is_finalised_at_once():
    """An async resource whose initialisation ends after its scope closed is finalised with ScopeClosedError."""
    events: list[str] = []
    go = asyncio.Event()

    async def open_slowly():
        events.append("open")
        await go.wait()
        try:
            yield "connection"
        except BaseException as exc:
            events.append(f"finalised with {type(exc).__name__}")
            raise

    connection = providers.ScopedResource(open_slowly)
    async with scope(containers.DynamicContainer()):
        creator = asyncio.create_task(connection.async_())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(connection.async_())
        await asyncio.sleep(0)
    go.set()
    with pytest.raises(errors.ScopeClosedError):
        await asyncio.wait_for(creator, 5)
    with pytest.raises(errors.ScopeClosedError):
        await asyncio.wait_for(waiter, 5)
    assert events == ["open", "finalised with ScopeClosedError"]


def test_thread_resource_finishing_after_close_is_finalised_at_once():
    """A resource a worker thread finishes creating after the scope closed is finalised with ScopeClosedError."""
    events: list[str] = []
    started, go = threading.Event(), threading.Event()

    def open_slowly():
        events.append("open")
        started.set()
        go.wait(5)
        try:
            yield "connection"
        except BaseException as exc:
            events.append(f"finalised with {type(exc).__name__}")
            raise

    connection = providers.ScopedResource(open_slowly)
    outcome: list[BaseException] = []

    def run(context):
        try:
            context.run(connection)
        except BaseException as error:
            outcome.append(error)

    with scope(containers.DynamicContainer()):
        thread = threading.Thread(target=run, args=(contextvars.copy_context(),))
        thread.start()
        assert started.wait(5)
    go.set()
    thread.join(5)
    assert not thread.is_alive()
    assert [type(error) for error in outcome] == [errors.ScopeClosedError]
    assert events == ["open", "finalised with ScopeClosedError"]
