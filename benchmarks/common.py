"""What every benchmark module shares: the request graph's objects, timing, checks.

Kept out of ``run.py`` so that ``peers.py`` and ``scaling.py`` build the very same
``Session``/``Service`` classes the checks look for (``run.py`` runs as ``__main__``).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

#: every contender whose work was checked before it was timed, in order
VERIFIED: list[str] = []


class BenchmarkError(Exception):
    """A contender did not do the work it is timed for."""


# --- the objects every contender builds ---------------------------------------------


class Session:
    """Stands in for a database session: created and closed once per request."""

    __slots__ = ("closed", "closed_in")

    def __init__(self) -> None:
        self.closed = False
        self.closed_in: int | None = None

    def close(self) -> None:
        self.closed = True


class RepoA:
    def __init__(self, session: Session) -> None:
        self.session = session


class RepoB:
    def __init__(self, session: Session) -> None:
        self.session = session


class Service:
    def __init__(self, a: RepoA, b: RepoB) -> None:
        self.a = a
        self.b = b


class Thing:
    def __init__(self, a: int, b: int) -> None:
        self.a = a
        self.b = b


def session_generator() -> Iterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.close()


async def session_async_generator() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.close()


def thread_noting_session_generator() -> Iterator[Session]:
    """``session_generator`` that also notes the thread its finaliser ran in."""
    session = Session()
    try:
        yield session
    finally:
        session.close()
        session.closed_in = threading.get_ident()


make_session = contextmanager(session_generator)
make_async_session = asynccontextmanager(session_async_generator)
make_thread_noting_session = contextmanager(thread_noting_session_generator)


# --- measurement ------------------------------------------------------------------


def per_op_ns(function: Callable[[int], float], loops: int) -> float:
    """Nanoseconds per operation of ``function(loops)``, which returns elapsed seconds."""
    return function(loops) / loops * 1e9


def sync_loop(body: Callable[[], Any]) -> Callable[[int], float]:
    def run(loops: int) -> float:
        started = time.perf_counter()
        for _ in range(loops):
            body()
        return time.perf_counter() - started

    return run


def async_loop(loop: asyncio.AbstractEventLoop, body: Callable[[], Any]) -> Callable[[int], float]:
    async def many(loops: int) -> float:
        started = time.perf_counter()
        for _ in range(loops):
            await body()
        return time.perf_counter() - started

    def run(loops: int) -> float:
        return loop.run_until_complete(many(loops))

    return run


def measure(
    contenders: dict[str, Callable[[int], float]], loops: int, rounds: int
) -> dict[str, float]:
    """Median ns/op per contender; contenders alternate within every round."""
    for run in contenders.values():  # warm-up: settles async modes, caches
        run(max(loops // 10, 100))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            samples[name].append(per_op_ns(run, loops))
    return {name: statistics.median(values) for name, values in samples.items()}


async def measure_in_loop(
    contenders: dict[str, Callable[[int], Awaitable[float]]], loops: int, rounds: int
) -> dict[str, float]:
    """``measure`` for contenders that must all run inside one coroutine (one open scope)."""
    for run in contenders.values():
        await run(max(loops // 10, 100))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            samples[name].append(await run(loops) / loops * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def new_loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


# --- correctness checks (once per contender, before timing) ---------------------------


def verify_cycles(
    name: str, first: Any, second: Any, *, closed_in: Callable[[int], Any] | None = None
) -> None:
    """Both repositories got one session, it was closed, two cycles got two sessions.

    ``first`` and ``second`` are (service, session closed when the cycle returned).
    """
    sessions = []
    for ordinal, (service, closed_at_end) in (("first", first), ("second", second)):
        if not isinstance(service, Service):
            raise BenchmarkError(f"{name}: the {ordinal} cycle gave {service!r}, not a Service")
        session = service.a.session
        if not isinstance(session, Session) or service.b.session is not session:
            raise BenchmarkError(f"{name}: the two repositories got different sessions")
        if not closed_at_end:
            raise BenchmarkError(f"{name}: the session was still open when the cycle ended")
        if closed_in is not None:
            closed_in(session.closed_in)
        sessions.append(session)
    if sessions[0] is sessions[1]:
        raise BenchmarkError(f"{name}: two cycles got the same session")
    VERIFIED.append(name)


def check_sync(name: str, cycle: Callable[[], Service]) -> None:
    runs = []
    for _ in range(2):
        service = cycle()
        runs.append((service, isinstance(service, Service) and service.a.session.closed))
    verify_cycles(name, *runs)


def check_async(
    loop: asyncio.AbstractEventLoop,
    name: str,
    cycle: Callable[[], Awaitable[Service]],
    *,
    closed_in: Callable[[int], Any] | None = None,
) -> None:
    async def once() -> tuple[Any, bool]:
        service = await cycle()
        return service, isinstance(service, Service) and service.a.session.closed

    runs = [loop.run_until_complete(once()) for _ in range(2)]
    verify_cycles(name, *runs, closed_in=closed_in)
