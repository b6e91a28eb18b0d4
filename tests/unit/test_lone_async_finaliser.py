"""A scope whose only finaliser is an async generator, closed after a clean exit.

The request's usual shape (one session, nothing failed) closes without a
coroutine of its own: the awaitable ``__aexit__`` returns steps the generator
itself.  These tests hold it to what the general close does: it suspends and
resumes, delivers cancellation, reports failures, and leaves the scope closed
and no longer current on every path.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from dependency_injector_scoped import containers, errors, get_current_scope, providers

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup  # noqa: F401


def container_of(generator) -> containers.DeclarativeContainer:
    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(generator)

    return Local()


async def test_finaliser_that_suspends_lets_the_loop_run_and_finishes_the_scope():
    """A finally that awaits suspends the close; other tasks run meanwhile; the scope ends closed."""
    events: list[str] = []

    async def session():
        yield "session"
        events.append("closing")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        events.append("closed")

    async def other():
        events.append("other ran")

    c = container_of(session)
    async with c.scope() as opened:
        assert await c.session() == "session"
        task = asyncio.ensure_future(other())
    await task
    assert events == ["closing", "other ran", "closed"]
    assert opened.state == 3  # closed
    assert get_current_scope() is None


async def test_aexit_result_is_falsy_and_cannot_be_awaited_twice():
    """``__aexit__`` answers None (the exception is not swallowed); a second await of it raises."""

    async def session():
        yield "session"

    c = container_of(session)
    opened = c.scope()
    await opened.__aenter__()
    await c.session()
    closing = opened.__aexit__(None, None, None)
    assert await closing is None
    with pytest.raises(RuntimeError, match="already awaited"):
        await closing
    assert get_current_scope() is None


async def test_finaliser_error_is_raised_as_finalizer_error_and_the_scope_is_left():
    """An error in the finally is reported as FinalizerError naming the provider; the scope is closed."""

    async def session():
        yield "session"
        await asyncio.sleep(0)
        raise ValueError("commit failed")

    c = container_of(session)
    with pytest.raises(errors.FinalizerError, match="'session'") as caught:
        async with c.scope():
            await c.session()
    [error] = caught.value.exceptions
    assert isinstance(error, ValueError)
    assert get_current_scope() is None


async def test_interrupt_from_the_finaliser_propagates_as_is():
    """KeyboardInterrupt raised by the finally propagates itself, not wrapped."""

    async def session():
        yield "session"
        raise KeyboardInterrupt

    c = container_of(session)
    with pytest.raises(KeyboardInterrupt):
        async with c.scope():
            await c.session()
    assert get_current_scope() is None


async def test_cancelling_the_task_while_the_finaliser_awaits_delivers_cancelled_error():
    """A cancel reaches the finally where it awaits; the task ends cancelled and the scope closed."""
    seen: list[str] = []
    started = asyncio.Event()

    async def session():
        yield "session"
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled in finaliser")
            raise

    c = container_of(session)
    scopes = []

    async def request():
        async with c.scope() as opened:
            scopes.append(opened)
            await c.session()

    task = asyncio.ensure_future(request())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled in finaliser"]
    assert scopes[0].state == 3


async def test_close_is_a_coroutine_to_asyncio():
    """``shutdown()``'s awaitable passes asyncio's coroutine check, so task APIs accept it."""
    events: list[str] = []

    async def session():
        yield "session"
        await asyncio.sleep(0)
        events.append("closed")

    c = container_of(session)
    opened = c.scope()
    await opened.init()
    await c.session()
    closing = opened.shutdown()
    assert asyncio.iscoroutine(closing)
    await closing
    assert events == ["closed"]
    assert get_current_scope() is None


async def test_generator_yielding_again_is_closed_and_reported_even_when_its_close_awaits():
    """A generator that yields again is closed (its finally awaits) and the scope fails naming it."""
    events: list[str] = []

    async def twice():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            events.append("finally ran")

    c = container_of(twice)
    with pytest.raises(errors.FinalizerError, match="'session'"):
        async with c.scope():
            await c.session()
    assert events == ["finally ran"]
    assert get_current_scope() is None


async def test_closing_the_awaitable_mid_finaliser_throws_generator_exit_and_finishes_the_scope():
    """Closing the half-run close (as the garbage collector closes a dropped task) ends it cleanly."""
    events: list[str] = []

    async def session():
        yield "session"
        try:
            await asyncio.sleep(10)
        except GeneratorExit:
            events.append("generator exit")
            raise

    c = container_of(session)
    opened = c.scope()
    await opened.init()
    await c.session()
    closing = opened.shutdown()
    step = closing.send(None)  # the finaliser suspends in its sleep
    assert step is not None
    closing.close()
    assert events == ["generator exit"]
    assert opened.state == 3
    assert get_current_scope() is None
    closing.close()  # a second close is a no-op
    del step
    gc.collect()


async def test_throwing_into_a_finished_close_raises_the_exception():
    """After the close finished, ``throw`` raises what it is given, as a finished coroutine does."""

    async def session():
        yield "session"

    c = container_of(session)
    opened = c.scope()
    await opened.init()
    await c.session()
    closing = opened.shutdown()
    with pytest.raises(StopIteration):
        closing.send(None)
    with pytest.raises(LookupError, match="late"):
        closing.throw(LookupError("late"))


async def test_the_generator_receives_values_sent_to_the_close():
    """What the awaiting code sends in (a future's result) reaches the generator where it awaits."""
    received: list[object] = []

    class Echo:
        def __await__(self):
            received.append((yield "suspended"))

    async def session():
        yield "session"
        await Echo()

    c = container_of(session)
    opened = c.scope()
    await opened.init()
    await c.session()
    closing = opened.shutdown()
    assert closing.send(None) == "suspended"
    with pytest.raises(StopIteration):
        closing.send("resumed")
    assert received == ["resumed"]
    assert get_current_scope() is None
