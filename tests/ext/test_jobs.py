"""``in_scope``: one scope per call of a job, a command or a script function."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dependency_injector.wiring import DIWiringWarning

from dependency_injector_scoped import containers, errors, get_current_scope, providers
from dependency_injector_scoped.ext.jobs import in_scope

from . import jobs_support
from .jobs_support import JobFailed


@pytest.fixture
def wired() -> Iterator[list[tuple[str, int, str | None]]]:
    """``jobs_support`` wired to its container; yields the journal of session endings."""
    container = jobs_support.container
    container.journal.reset()
    container.wire(modules=[jobs_support])
    try:
        yield container.journal()
    finally:
        container.unwire()
        container.journal.reset()


@pytest.mark.parametrize("name", jobs_support.SYNC_JOBS)
def test_wired_sync_job_commits_a_fresh_session_per_call(
    wired: list[tuple[str, int, str | None]], name: str
) -> None:
    """After wire(), every decoration order injects inside the call's own scope, which commits."""
    job = getattr(jobs_support, name)
    first = job()
    second = job()
    assert isinstance(first, jobs_support.Session)
    assert first is not second
    assert wired == [("commit", first.number, None), ("commit", second.number, None)]
    assert get_current_scope() is None


@pytest.mark.parametrize("name", jobs_support.SYNC_JOBS)
def test_wired_sync_job_failure_rolls_back_and_propagates(
    wired: list[tuple[str, int, str | None]], name: str
) -> None:
    """A job that raises rolls its session back with that exception, which reaches the caller."""
    job = getattr(jobs_support, name)
    with pytest.raises(JobFailed):
        job(fail=True)
    assert [(event, error) for event, _number, error in wired] == [("rollback", "JobFailed")]
    assert get_current_scope() is None


@pytest.mark.parametrize("name", jobs_support.ASYNC_JOBS)
async def test_wired_async_job_commits_a_fresh_session_per_call(
    wired: list[tuple[str, int, str | None]], name: str
) -> None:
    """After wire(), async jobs in every decoration order inject inside their own scope."""
    job = getattr(jobs_support, name)
    first = await job()
    second = await job()
    assert first is not second
    assert wired == [("commit", first.number, None), ("commit", second.number, None)]


@pytest.mark.parametrize("name", jobs_support.ASYNC_JOBS)
async def test_wired_async_job_failure_rolls_back_and_propagates(
    wired: list[tuple[str, int, str | None]], name: str
) -> None:
    """An async job that raises rolls back with that exception, which reaches the caller."""
    job = getattr(jobs_support, name)
    with pytest.raises(JobFailed):
        await job(fail=True)
    assert [(event, error) for event, _number, error in wired] == [("rollback", "JobFailed")]


def test_wire_does_not_repatch_the_wrappers() -> None:
    """wire() leaves the decorated functions (and wrappers around them) as they are."""
    names = [
        name for name in jobs_support.SYNC_JOBS + jobs_support.ASYNC_JOBS if name != "bound_method"
    ]
    before = {name: getattr(jobs_support, name) for name in names}
    method = jobs_support.Jobs.__dict__["method"]
    jobs_support.container.wire(modules=[jobs_support])
    try:
        after = {name: getattr(jobs_support, name) for name in names}
        assert jobs_support.Jobs.__dict__["method"] is method
    finally:
        jobs_support.container.unwire()
    assert after == before


def test_inject_above_in_scope_is_reported_not_required() -> None:
    """``@inject`` written above ``in_scope`` finds no marker: dependency-injector warns, once each."""
    messages = [str(warning.message) for warning in jobs_support.OUTER_INJECT_WARNINGS]
    assert [warning.category for warning in jobs_support.OUTER_INJECT_WARNINGS] == [
        DIWiringWarning,
        DIWiringWarning,
    ]
    assert all("not required" in message for message in messages)


def test_signature_lists_only_the_callers_parameters() -> None:
    """Injected parameters are left out of the wrapper's signature, the others kept."""
    for name in ("scope_over_inject", "scope_alone", "wrapped_outside", "async_scope_alone"):
        assert list(inspect.signature(getattr(jobs_support, name)).parameters) == ["fail"]
    assert list(inspect.signature(jobs_support.Jobs.method).parameters) == ["self", "fail"]


def test_explicit_argument_overrides_the_injection(
    wired: list[tuple[str, int, str | None]],
) -> None:
    """A caller passing an injected parameter gets its own object; no session is opened."""
    mine = jobs_support.Service(jobs_support.Session())
    assert jobs_support.scope_over_inject(service=mine) is mine.session
    assert jobs_support.scope_alone(service=mine) is mine.session
    assert wired == []


def test_decorated_functions_keep_their_identity() -> None:
    """functools.wraps: name, docstring and module are the function's; coroutine functions stay so."""
    assert jobs_support.scope_over_inject.__name__ == "scope_over_inject"
    assert jobs_support.scope_over_inject.__module__ == jobs_support.__name__
    assert inspect.iscoroutinefunction(jobs_support.async_scope_alone)
    assert not inspect.iscoroutinefunction(jobs_support.scope_alone)


# Plain functions that resolve from the container themselves (no wiring).


class Journal:
    """How each resource of a test ended, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str | None]] = []
        self.count = 0
        self.lock = threading.Lock()

    def session(self) -> Iterator[int]:
        with self.lock:
            self.count += 1
            number = self.count
        try:
            yield number
        except BaseException as error:
            with self.lock:
                self.events.append(("rollback", number, type(error).__name__))
            raise
        with self.lock:
            self.events.append(("commit", number, None))

    async def async_session(self) -> AsyncIterator[int]:
        generator = self.session()
        number = next(generator)
        try:
            yield number
        except BaseException as error:
            with contextlib.suppress(type(error)):
                generator.throw(error)
            raise
        with contextlib.suppress(StopIteration):
            next(generator)


def make_container(journal: Journal) -> Any:
    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(journal.session)
        async_session = providers.ScopedResource(journal.async_session)
        job_name = providers.ScopedValue("job", scope="job")
        labelled = providers.ScopedFactory(
            lambda name, session: f"{name}:{session}", name=job_name, session=session, scope="job"
        )

    return Container()


def test_sync_call_runs_in_a_with_scope_closed_on_return() -> None:
    """A sync function runs in a fresh open scope of the container, closed when it returns."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container)
    def job() -> tuple[Any, int]:
        current = get_current_scope()
        assert current is not None and current.is_open and current.container is container
        return current, container.session()

    first_scope, first = job()
    second_scope, second = job()
    assert first_scope is not second_scope
    assert first_scope.closed and second_scope.closed
    assert journal.events == [("commit", first, None), ("commit", second, None)]


async def test_async_call_runs_in_an_async_with_scope() -> None:
    """A coroutine function runs in ``async with``: async resources work and commit on return."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container)
    async def job() -> int:
        number: int = await container.async_session()
        await asyncio.sleep(0)
        assert await container.async_session() == number
        return number

    number = await job()
    assert journal.events == [("commit", number, None)]
    assert get_current_scope() is None


@pytest.mark.parametrize("raised", [JobFailed, SystemExit, KeyboardInterrupt])
def test_any_exception_reaches_the_finalisers_and_propagates(raised: type[BaseException]) -> None:
    """JobFailed, SystemExit (sys.exit in a command) and KeyboardInterrupt roll back and propagate."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container)
    def job() -> None:
        container.session()
        raise raised

    with pytest.raises(raised):
        job()
    assert journal.events == [("rollback", 1, raised.__name__)]


async def test_cancelled_async_job_rolls_back() -> None:
    """A cancelled async job rolls back with CancelledError and the task ends cancelled."""
    journal = Journal()
    container = make_container(journal)
    started = asyncio.Event()

    @in_scope(container)
    async def job() -> None:
        await container.async_session()
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(job())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert journal.events == [("rollback", 1, "CancelledError")]


def test_failing_commit_makes_the_call_raise() -> None:
    """A finaliser failing after the function returned raises FinalizerError from the call."""

    def broken_session() -> Iterator[str]:
        yield "session"
        raise RuntimeError("commit failed")

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(broken_session)

    container = Container()

    @in_scope(container)
    def job() -> str:
        return container.session()

    with pytest.raises(errors.FinalizerError) as caught:
        job()
    assert [str(error) for error in caught.value.exceptions] == ["commit failed"]


def test_name_and_values_are_given_to_each_scope() -> None:
    """``name`` binds ``scope="job"`` providers; ``values`` feeds ScopedValue."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container, "job", values={"job": "nightly"})
    def job() -> str:
        current = get_current_scope()
        assert current is not None and current.name == "job"
        return container.labelled()

    assert job() == "nightly:1"
    assert job() == "nightly:2"


def test_unnamed_scope_does_not_serve_a_named_provider() -> None:
    """A provider bound to scope "job" is not served by an unnamed job scope."""
    container = make_container(Journal())

    @in_scope(container)
    def job() -> str:
        return container.labelled()

    with pytest.raises(errors.NoActiveScopeError):
        job()


async def test_overlapping_async_calls_each_get_their_own_scope() -> None:
    """Calls running at the same time in tasks each get their own session."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container)
    async def job() -> int:
        number: int = await container.async_session()
        for _ in range(3):
            await asyncio.sleep(0)
            assert await container.async_session() == number
        return number

    numbers = await asyncio.wait_for(asyncio.gather(*(job() for _ in range(8))), 10)
    assert sorted(numbers) == list(range(1, 9))
    assert sorted(journal.events) == [("commit", number, None) for number in range(1, 9)]


def test_calls_in_threads_each_get_their_own_scope() -> None:
    """Calls running at the same time in threads each get their own session."""
    journal = Journal()
    container = make_container(journal)
    barrier = threading.Barrier(4, timeout=5)

    @in_scope(container)
    def job() -> int:
        number: int = container.session()
        barrier.wait()
        assert container.session() == number
        return number

    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(lambda _: job(), range(4)))
    assert sorted(numbers) == [1, 2, 3, 4]
    assert sorted(journal.events) == [("commit", number, None) for number in range(1, 5)]


def test_nothing_is_created_unless_resolved() -> None:
    """Scoped resources stay lazy: a call that resolves nothing opens no session."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container)
    def job() -> str:
        return "done"

    assert job() == "done"
    assert journal.events == []


def test_sync_function_refuses_an_async_resource() -> None:
    """A sync function's scope is a ``with`` scope: an async resource raises a ScopeError."""
    journal = Journal()
    container = make_container(journal)

    @in_scope(container)
    def job() -> None:
        container.async_session()

    with pytest.raises(errors.ScopeError, match="async with"):
        job()
    assert journal.events == []


@pytest.mark.parametrize("kind", ["generator", "async generator"])
def test_generator_functions_are_refused(kind: str) -> None:
    """A generator's body would run outside the call's scope: decorating one raises TypeError."""
    container = make_container(Journal())

    def generator() -> Iterator[int]:
        yield 1

    async def async_generator() -> AsyncIterator[int]:
        yield 1

    function = generator if kind == "generator" else async_generator
    with pytest.raises(TypeError, match="generator function"):
        in_scope(container)(function)


def test_inject_above_in_scope_without_wiring_module_warns() -> None:
    """Writing ``@inject`` above ``in_scope`` in a test module warns that it is not required."""
    from dependency_injector.wiring import Provide, inject

    container = jobs_support.container

    def job(service: jobs_support.Service = Provide[jobs_support.Container.service]) -> None:
        """A job."""

    with pytest.warns(DIWiringWarning, match="not required"):
        inject(in_scope(container)(job))
