"""Finalisation at scope exit: order, the exception that ended the scope, failing finalisers."""

from __future__ import annotations

import contextlib
import logging
import sys

import dependency_injector.errors
import pytest
from dependency_injector import resources

from dependency_injector_scoped import containers, errors, providers, scope

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup


class Boom(Exception):
    """The exception that ends a scope in these tests."""


def recorded(events: list[str], *, eager: bool = False) -> dict[str, providers.ScopedResource]:
    """Free-standing scoped resources of every kind, recording 'init X' and 'close X'."""

    def generator():
        events.append("init generator")
        yield "generator"
        events.append("close generator")

    async def async_generator():
        events.append("init async_generator")
        yield "async_generator"
        events.append("close async_generator")

    @contextlib.contextmanager
    def context_manager():
        events.append("init context_manager")
        yield "context_manager"
        events.append("close context_manager")

    @contextlib.asynccontextmanager
    async def async_context_manager():
        events.append("init async_context_manager")
        yield "async_context_manager"
        events.append("close async_context_manager")

    class Res(resources.Resource):
        def init(self):
            events.append("init resource")
            return "resource"

        def shutdown(self, resource):
            events.append("close resource")

    class AsyncRes(resources.AsyncResource):
        async def init(self):
            events.append("init async_resource")
            return "async_resource"

        async def shutdown(self, resource):
            events.append("close async_resource")

    async def coroutine():
        events.append("init coroutine")
        return "coroutine"

    def plain():
        events.append("init plain")
        return "plain"

    kinds = {
        "generator": generator,
        "async_generator": async_generator,
        "context_manager": context_manager,
        "async_context_manager": async_context_manager,
        "resource": Res,
        "async_resource": AsyncRes,
        "coroutine": coroutine,
        "plain": plain,
    }
    return {name: providers.ScopedResource(kind, eager=eager) for name, kind in kinds.items()}


FINALISED = {
    "generator",
    "async_generator",
    "context_manager",
    "async_context_manager",
    "resource",
    "async_resource",
}


async def test_sync_and_async_resources_close_in_reverse_order_of_creation():
    """Mixed sync and async resources are finalised in reverse order of their creation."""
    events: list[str] = []
    kinds = recorded(events)
    order = [
        "async_resource",
        "generator",
        "coroutine",
        "async_context_manager",
        "resource",
        "plain",
        "async_generator",
        "context_manager",
    ]
    async with scope(containers.DynamicContainer()):
        for name in order:
            assert await kinds[name].async_() == name
        assert events == [f"init {name}" for name in order]
        events.clear()
    assert events == [f"close {name}" for name in reversed(order) if name in FINALISED]


async def test_reverse_order_holds_for_another_creation_order():
    """Finalisation follows the actual creation order, not the declaration order."""
    events: list[str] = []
    kinds = recorded(events)
    order = [
        "context_manager",
        "async_generator",
        "resource",
        "generator",
        "async_resource",
        "async_context_manager",
    ]
    async with scope(containers.DynamicContainer()):
        for name in order:
            await kinds[name].async_()
        events.clear()
    assert events == [f"close {name}" for name in reversed(order)]


def test_sync_resources_close_in_reverse_order_in_a_sync_scope():
    """In a sync scope, generator, context manager and Resource close in reverse creation order."""
    events: list[str] = []
    kinds = recorded(events)
    order = ["resource", "generator", "plain", "context_manager"]
    with scope(containers.DynamicContainer()):
        for name in order:
            assert kinds[name]() == name
        events.clear()
    assert events == ["close context_manager", "close generator", "close resource"]


async def test_eager_resources_close_in_reverse_order_of_their_initialisation():
    """Eager resources initialised on entry are finalised in reverse order of their initialisation."""
    events: list[str] = []
    kinds = recorded(events, eager=True)

    class Local(containers.DeclarativeContainer):
        a = kinds["async_generator"]
        b = kinds["generator"]
        c = kinds["async_context_manager"]
        d = kinds["context_manager"]
        e = kinds["async_resource"]
        f = kinds["resource"]

    async with Local().scope():
        created = [event.removeprefix("init ") for event in events]
        assert sorted(created) == sorted(FINALISED)
        events.clear()
    assert events == [f"close {name}" for name in reversed(created)]


def test_dependency_is_closed_after_its_dependant():
    """A resource created as another's dependency is created first and closed last."""
    events: list[str] = []

    def open_engine():
        events.append("init engine")
        yield "engine"
        events.append("close engine")

    def open_session(engine):
        events.append("init session")
        yield f"session on {engine}"
        events.append("close session")

    engine = providers.ScopedResource(open_engine)
    session = providers.ScopedResource(open_session, engine)
    with scope(containers.DynamicContainer()):
        assert session() == "session on engine"
    assert events == ["init engine", "init session", "close session", "close engine"]


# The exception that ended the scope reaches every finaliser -----------------


def transactional(events: list[str]):
    def open_transaction():
        events.append("begin")
        try:
            yield "tx"
            events.append("commit")
        except BaseException:
            events.append("rollback")
            raise

    return open_transaction


def test_generator_commits_when_the_scope_ends_cleanly():
    """A transactional generator commits when the scope exits without an exception."""
    events: list[str] = []
    tx = providers.ScopedResource(transactional(events))
    with scope(containers.DynamicContainer()):
        tx()
    assert events == ["begin", "commit"]


def test_generator_rolls_back_when_the_scope_ends_with_an_exception():
    """The scope's exception is thrown into the generator, which rolls back; the same exception propagates."""
    events: list[str] = []
    tx = providers.ScopedResource(transactional(events))
    error = Boom("request failed")
    with pytest.raises(Boom) as caught:
        with scope(containers.DynamicContainer()):
            tx()
            raise error
    assert caught.value is error
    assert events == ["begin", "rollback"]
    assert not getattr(error, "__notes__", None)


async def test_async_generator_rolls_back_when_the_scope_ends_with_an_exception():
    """The scope's exception is thrown into an async generator; the same exception propagates."""
    events: list[str] = []

    async def open_transaction():
        events.append("begin")
        try:
            yield "tx"
            events.append("commit")
        except BaseException as exc:
            events.append(f"rollback {exc!r}")
            raise

    tx = providers.ScopedResource(open_transaction)
    error = Boom("request failed")
    with pytest.raises(Boom) as caught:
        async with scope(containers.DynamicContainer()):
            await tx()
            raise error
    assert caught.value is error
    assert events == ["begin", f"rollback {error!r}"]


async def test_async_generator_commits_when_the_scope_ends_cleanly():
    """An async transactional generator commits when the scope exits cleanly."""
    events: list[str] = []

    async def open_transaction():
        try:
            yield "tx"
            events.append("commit")
        except BaseException:
            events.append("rollback")
            raise

    tx = providers.ScopedResource(open_transaction)
    async with scope(containers.DynamicContainer()):
        await tx()
    assert events == ["commit"]


def test_exit_receives_the_exception():
    """A context manager's __exit__ receives the type, object and traceback of the scope's exception."""
    seen = []

    class Manager:
        def __enter__(self):
            return self

        def __exit__(self, exc_type, exc, traceback):
            seen.append((exc_type, exc, traceback))

    cm = providers.ScopedResource(Manager)
    error = Boom()
    with pytest.raises(Boom) as caught:
        with scope(containers.DynamicContainer()):
            cm()
            raise error
    assert caught.value is error
    [(exc_type, exc, traceback)] = seen
    assert exc_type is Boom
    assert exc is error
    assert traceback is not None


def test_exit_returning_true_does_not_swallow_the_exception():
    """A context manager whose __exit__ returns True cannot suppress the scope's exception."""

    class Swallower:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return True

    cm = providers.ScopedResource(Swallower)
    with pytest.raises(Boom):
        with scope(containers.DynamicContainer()):
            cm()
            raise Boom()


def test_exit_receives_none_on_a_clean_exit():
    """On a clean exit __exit__ is called with (None, None, None)."""
    seen = []

    class Manager:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            seen.append(exc_info)

    cm = providers.ScopedResource(Manager)
    with scope(containers.DynamicContainer()):
        cm()
    assert seen == [(None, None, None)]


async def test_aexit_receives_the_exception():
    """An async context manager's __aexit__ receives the scope's exception."""
    seen = []

    class Manager:
        async def __aenter__(self):
            return self

        async def __aexit__(self, exc_type, exc, traceback):
            seen.append((exc_type, exc))

    cm = providers.ScopedResource(lambda: Manager())
    error = Boom()
    with pytest.raises(Boom) as caught:
        async with scope(containers.DynamicContainer()):
            await cm()
            raise error
    assert caught.value is error
    assert seen == [(Boom, error)]


def test_context_manager_function_sees_the_exception():
    """A @contextmanager initializer gets the scope's exception raised at its yield."""
    events: list[str] = []

    @contextlib.contextmanager
    def managed():
        try:
            yield "value"
        except Boom as exc:
            events.append(f"saw {exc!r}")
            raise

    cm = providers.ScopedResource(managed)
    with pytest.raises(Boom):
        with scope(containers.DynamicContainer()):
            cm()
            raise Boom("x")
    assert events == ["saw Boom('x')"]


def test_resource_shutdown_accepting_the_exception_receives_it():
    """Resource.shutdown(resource, exc) receives the resource and the scope's exception."""
    seen = []

    class Res(resources.Resource):
        def init(self):
            return "conn"

        def shutdown(self, resource, exc):
            seen.append((resource, exc))

    res = providers.ScopedResource(Res)
    error = Boom()
    with pytest.raises(Boom) as caught:
        with scope(containers.DynamicContainer()):
            res()
            raise error
    assert caught.value is error
    assert seen == [("conn", error)]


def test_resource_shutdown_with_optional_exception_parameter_receives_it():
    """A Resource.shutdown(resource, exc=None) receives the exception too."""
    seen = []

    class Res(resources.Resource):
        def init(self):
            return "conn"

        def shutdown(self, resource, exc=None):
            seen.append((resource, exc))

    res = providers.ScopedResource(Res)
    with scope(containers.DynamicContainer()):
        res()
    error = Boom()
    with pytest.raises(Boom):
        with scope(containers.DynamicContainer()):
            res()
            raise error
    assert seen == [("conn", None), ("conn", error)]


def test_resource_shutdown_without_exception_parameter_is_still_called():
    """A Resource.shutdown(resource) is called with the resource when the scope fails."""
    seen = []

    class Res(resources.Resource):
        def init(self):
            return "conn"

        def shutdown(self, resource):
            seen.append(resource)

    res = providers.ScopedResource(Res)
    with pytest.raises(Boom):
        with scope(containers.DynamicContainer()):
            res()
            raise Boom()
    assert seen == ["conn"]


async def test_async_resource_shutdown_accepting_the_exception_receives_it():
    """AsyncResource.shutdown(resource, exc) receives the scope's exception."""
    seen = []

    class Res(resources.AsyncResource):
        async def init(self):
            return "conn"

        async def shutdown(self, resource, exc):
            seen.append((resource, exc))

    res = providers.ScopedResource(Res)
    error = Boom()
    with pytest.raises(Boom) as caught:
        async with scope(containers.DynamicContainer()):
            await res()
            raise error
    assert caught.value is error
    assert seen == [("conn", error)]


def test_every_finaliser_receives_the_same_exception():
    """The exception ending the scope reaches every finaliser of the scope."""
    seen = []

    def make(label):
        def initializer():
            try:
                yield label
            except Boom as exc:
                seen.append((label, exc))
                raise

        return initializer

    first = providers.ScopedResource(make("first"))
    second = providers.ScopedResource(make("second"))
    error = Boom()
    with pytest.raises(Boom):
        with scope(containers.DynamicContainer()):
            first()
            second()
            raise error
    assert seen == [("second", error), ("first", error)]


def test_explicit_shutdown_delivers_the_given_exception():
    """s.shutdown(exc=e) throws e into the generators without raising it."""
    events: list[str] = []
    tx = providers.ScopedResource(transactional(events))
    s = scope(containers.DynamicContainer())
    s.init()
    tx()
    assert s.shutdown(exc=Boom()) is None
    assert events == ["begin", "rollback"]


async def test_explicit_async_shutdown_delivers_the_given_exception():
    """await s.shutdown(exc=e) delivers e to async finalisers without raising it."""
    seen = []

    async def open_transaction():
        try:
            yield "tx"
        except Boom as exc:
            seen.append(exc)
            raise

    tx = providers.ScopedResource(open_transaction)
    s = scope(containers.DynamicContainer())
    await s.init()
    await tx()
    error = Boom()
    await s.shutdown(exc=error)
    assert seen == [error]


# Failing finalisers -----------------------------------------------------------


def failing_and_recording(events: list[str]):
    def ok(label):
        def initializer():
            try:
                yield label
            finally:
                events.append(f"close {label}")

        return initializer

    def failing(label):
        def initializer():
            try:
                yield label
            finally:
                events.append(f"close {label}")
                raise RuntimeError(f"{label} failed")

        return initializer

    class Local(containers.DeclarativeContainer):
        a_ok = providers.ScopedResource(ok("a_ok"))
        b_fails = providers.ScopedResource(failing("b_fails"))
        c_ok = providers.ScopedResource(ok("c_ok"))
        d_fails = providers.ScopedResource(failing("d_fails"))

    return Local()


def create_all(c: containers.DynamicContainer) -> None:
    """Create the resources of ``failing_and_recording`` in declaration order."""
    for name in ("a_ok", "b_fails", "c_ok", "d_fails"):
        getattr(c, name)()


def test_failing_finalisers_do_not_stop_the_others():
    """Every finaliser runs even when some of them raise."""
    events: list[str] = []
    c = failing_and_recording(events)
    with pytest.raises(errors.FinalizerError):
        with c.scope():
            create_all(c)
    assert events == ["close d_fails", "close c_ok", "close b_fails", "close a_ok"]


def test_clean_exit_raises_finalizer_error_with_every_failure():
    """On a clean exit, failing finalisers are raised together as a FinalizerError."""
    c = failing_and_recording([])
    with pytest.raises(errors.FinalizerError) as caught:
        with c.scope():
            create_all(c)
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, dependency_injector.errors.Error)
    assert isinstance(group, errors.FinalizerError)
    assert [str(error) for error in group.exceptions] == ["d_fails failed", "b_fails failed"]
    assert "b_fails" in str(group) and "d_fails" in str(group)


async def test_async_clean_exit_raises_finalizer_error_with_every_failure():
    """An async scope raises FinalizerError holding sync and async finaliser failures."""
    events: list[str] = []

    async def async_failing():
        try:
            yield "x"
        finally:
            events.append("close async_failing")
            raise RuntimeError("async failed")

    def sync_failing():
        try:
            yield "y"
        finally:
            events.append("close sync_failing")
            raise ValueError("sync failed")

    first = providers.ScopedResource(async_failing)
    second = providers.ScopedResource(sync_failing)
    with pytest.raises(errors.FinalizerError) as caught:
        async with scope(containers.DynamicContainer()):
            await first()
            second()
    assert events == ["close sync_failing", "close async_failing"]
    sync_error, async_error = caught.value.exceptions
    assert [type(sync_error), type(async_error)] == [ValueError, RuntimeError]
    assert async_error.__context__ is sync_error


def test_exception_exit_propagates_it_with_notes_naming_failed_finalisers(caplog):
    """When the scope ends with E and finalisers fail, E propagates with a note per failure."""
    events: list[str] = []
    c = failing_and_recording(events)
    error = Boom("handler failed")
    with caplog.at_level(logging.ERROR, logger="dependency_injector_scoped"):
        with pytest.raises(Boom) as caught:
            with c.scope():
                create_all(c)
                raise error
    assert caught.value is error
    notes = error.__notes__
    assert len(notes) == 2
    assert "d_fails" in notes[0] and "d_fails failed" in notes[0]
    assert "b_fails" in notes[1] and "b_fails failed" in notes[1]
    assert events == ["close d_fails", "close c_ok", "close b_fails", "close a_ok"]
    logged = [record for record in caplog.records if record.name == "dependency_injector_scoped"]
    assert len(logged) == 2
    assert all(record.exc_info for record in logged)


def test_explicit_shutdown_with_exception_adds_notes_instead_of_raising():
    """s.shutdown(exc=e) with failing finalisers adds notes to e and raises nothing."""
    c = failing_and_recording([])
    s = c.scope()
    s.init()
    create_all(c)
    error = Boom()
    assert s.shutdown(exc=error) is None
    assert len(error.__notes__) == 2


def test_finaliser_re_raising_the_scope_exception_is_not_a_failure():
    """A finaliser that re-raises the scope's own exception adds no note."""

    def reraiser():
        yield "x"

    res = providers.ScopedResource(reraiser)
    error = Boom()
    with pytest.raises(Boom):
        with scope(containers.DynamicContainer()):
            res()
            raise error
    assert not getattr(error, "__notes__", None)


class Stop(BaseException):
    """A BaseException raised by a finaliser."""


def test_base_exception_from_a_finaliser_is_raised_as_is_after_the_others_run():
    """A finaliser's BaseException is re-raised unchanged once every finaliser has run, each receiving it."""
    events: list[str] = []
    stop = Stop()

    def first():
        try:
            yield 1
        except BaseException as exc:
            events.append(f"close first with {type(exc).__name__}")
            raise
        events.append("close first")

    def stopper():
        yield 2
        raise stop

    a = providers.ScopedResource(first)
    b = providers.ScopedResource(stopper)
    with pytest.raises(Stop) as caught:
        with scope(containers.DynamicContainer()):
            a()
            b()
    assert caught.value is stop
    assert events == ["close first with Stop"]


async def test_async_exception_exit_adds_notes_for_failed_async_finalisers(caplog):
    """In `async with`, a failing async finaliser adds a note to the exception that ended the scope."""

    async def open_broken():
        try:
            yield "broken"
        finally:
            raise RuntimeError("cannot close")

    class Local(containers.DeclarativeContainer):
        broken = providers.ScopedResource(open_broken)

    c = Local()
    error = Boom()
    with caplog.at_level(logging.ERROR, logger="dependency_injector_scoped"):
        with pytest.raises(Boom) as caught:
            async with c.scope():
                assert await c.broken() == "broken"
                raise error
    assert caught.value is error
    [note] = error.__notes__
    assert "'broken'" in note and "cannot close" in note
