"""A failing finaliser fails the unit of work; interrupts win; finalisers resolve in their scope."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import pytest

from dependency_injector_scoped import containers, errors, providers

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup


class Boom(Exception):
    """The exception that ends a scope in these tests."""


class PublishError(Exception):
    """What the outbox's finaliser fails with."""


class Session:
    pass


@contextlib.asynccontextmanager
async def opened(c: containers.DynamicContainer, mode: str):
    """A scope of ``c`` entered with `with` or `async with`, from a coroutine."""
    if mode == "with":
        with c.scope() as s:
            yield s
    else:
        async with c.scope() as s:
            yield s


# `kind` of a finaliser: "sync" in a sync scope; in `async with`, "thread" (a sync finaliser,
# run in a worker thread) or "async".
KINDS = [("with", "sync"), ("async with", "thread"), ("async with", "async")]
KIND_IDS = ["with", "async with, sync finaliser", "async with, async finaliser"]


def resource(kind: str, *, on_exit=None, fails_with: BaseException | None = None):
    """A ScopedResource of ``kind`` calling ``on_exit(exc)`` when it closes, then raising."""

    def finalise(exc):
        if on_exit is not None:
            on_exit(exc)
        if fails_with is not None:
            raise fails_with

    if kind == "async":

        async def async_initializer():
            try:
                yield "value"
            except BaseException as exc:
                finalise(exc)
                raise
            finalise(None)

        return providers.ScopedResource(async_initializer)

    def initializer():
        try:
            yield "value"
        except BaseException as exc:
            finalise(exc)
            raise
        finalise(None)

    return providers.ScopedResource(initializer)


async def resolve_all(c: containers.DynamicContainer, *names: str) -> None:
    """Create the named resources, in this order."""
    for name in names:
        await getattr(c, name).async_()


# A finaliser that raises makes the later finalisers fail -----------------------------------


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_session_created_before_a_failing_outbox_receives_its_error(mode, kind):
    """The outbox, created after the session, fails to close: the session receives that error."""
    received: list[BaseException | None] = []
    failure = PublishError("broker down")
    c = containers.DynamicContainer()
    c.session = resource(kind, on_exit=received.append)
    c.outbox = resource(kind, fails_with=failure)
    with pytest.raises(errors.FinalizerError):
        async with opened(c, mode):
            await resolve_all(c, "session", "outbox")
    assert received == [failure]


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_every_finaliser_receives_the_latest_error(mode, kind):
    """Like ExitStack: each finaliser receives the error the one before it raised, if any."""
    received: dict[str, BaseException | None] = {}
    first, second = RuntimeError("c failed"), ValueError("b failed")
    c = containers.DynamicContainer()
    c.a = resource(kind, on_exit=lambda exc: received.setdefault("a", exc))
    c.b = resource(kind, on_exit=lambda exc: received.setdefault("b", exc), fails_with=second)
    c.c = resource(kind, fails_with=first)
    with pytest.raises(errors.FinalizerError):
        async with opened(c, mode):
            await resolve_all(c, "a", "b", "c")
    assert received == {"b": first, "a": second}


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_clean_exit_raises_finalizer_error_with_every_error(mode, kind):
    """Every finaliser runs; after a clean exit their errors are raised together, in order."""
    closed: list[str] = []
    first, second = RuntimeError("c failed"), ValueError("b failed")
    c = containers.DynamicContainer()
    c.a = resource(kind, on_exit=lambda exc: closed.append("a"))
    c.b = resource(kind, on_exit=lambda exc: closed.append("b"), fails_with=second)
    c.c = resource(kind, on_exit=lambda exc: closed.append("c"), fails_with=first)
    with pytest.raises(errors.FinalizerError) as caught:
        async with opened(c, mode):
            await resolve_all(c, "a", "b", "c")
    assert closed == ["c", "b", "a"]
    assert isinstance(caught.value, ExceptionGroup)
    assert list(caught.value.exceptions) == [first, second]


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_failed_exit_propagates_the_original_with_a_note_per_finaliser_error(
    mode, kind, caplog
):
    """After a failed exit the body's exception propagates, noting each finaliser error."""
    closed: list[str] = []
    error = Boom("handler failed")
    c = containers.DynamicContainer()
    c.session = resource(kind, on_exit=lambda exc: closed.append(f"session saw {exc!r}"))
    c.outbox = resource(kind, fails_with=PublishError("broker down"))
    with caplog.at_level(logging.ERROR, logger="dependency_injector_scoped"):
        with pytest.raises(Boom) as caught:
            async with opened(c, mode):
                await resolve_all(c, "session", "outbox")
                raise error
    assert caught.value is error
    [note] = error.__notes__
    assert "'outbox'" in note and "broker down" in note
    assert len(closed) == 1 and closed[0] != "session saw None"


# Interrupts raised by a finaliser win ----------------------------------------------------------

INTERRUPTS = [KeyboardInterrupt, SystemExit, asyncio.CancelledError]


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_interrupt_from_a_finaliser_propagates_after_the_others_ran(mode, kind, interrupt):
    """An interrupt raised by a finaliser after a clean exit propagates once every finaliser ran."""
    closed: list[str] = []
    c = containers.DynamicContainer()
    c.first = resource(kind, on_exit=lambda exc: closed.append("first"))
    c.second = resource(kind, fails_with=interrupt())
    with pytest.raises(interrupt):
        async with opened(c, mode):
            await resolve_all(c, "first", "second")
    assert closed == ["first"]


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_interrupt_from_a_finaliser_beats_the_scope_exception(mode, kind, interrupt):
    """After a failed exit, a finaliser's interrupt propagates, the original as its __context__."""
    closed: list[str] = []
    error = Boom("handler failed")
    c = containers.DynamicContainer()
    c.first = resource(kind, on_exit=lambda exc: closed.append("first"))
    c.second = resource(kind, fails_with=interrupt())
    with pytest.raises(interrupt) as caught:
        async with opened(c, mode):
            await resolve_all(c, "first", "second")
            raise error
    assert caught.value.__context__ is error
    assert closed == ["first"]


# Finalisers resolve in their own scope ---------------------------------------------------------


def resolving_in_finaliser(kind: str, resolve):
    """A resource whose finaliser calls ``resolve()``."""
    return resource(kind, on_exit=lambda exc: resolve())


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_finaliser_gets_the_closing_scopes_existing_instance(mode, kind):
    """A finaliser resolving a scoped provider gets the closing scope's instance, not the parent's."""
    seen: list[object] = []
    c = containers.DynamicContainer()
    c.session = providers.ScopedFactory(Session)
    c.outbox = resolving_in_finaliser(kind, lambda: seen.append(c.session()))
    async with opened(c, mode):
        outer = c.session()
        async with opened(c, mode):
            inner = c.session()
            await c.outbox.async_()
        assert seen == [inner]
        assert inner is not outer


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=KIND_IDS)
async def test_finaliser_resolving_a_new_instance_raises_scope_closed(mode, kind):
    """A finaliser resolving a provider its closing scope never created gets ScopeClosedError."""
    seen: list[object] = []

    def resolve_audit():
        try:
            seen.append(c.audit())
        except errors.ScopeClosedError as error:
            seen.append(error)

    c = containers.DynamicContainer()
    c.audit = providers.ScopedFactory(Session)
    c.outbox = resolving_in_finaliser(kind, resolve_audit)
    async with opened(c, mode):
        c.audit()
        async with opened(c, mode):
            await c.outbox.async_()
    [outcome] = seen
    assert isinstance(outcome, errors.ScopeClosedError)
