"""How the cost of a scope grows: providers per scope, scopes open at once, nesting depth.

``run.py --cases scaling`` calls ``measure_scaling``, which returns one flat mapping of
measurement name -> number (ns, or bytes for memory) so that several processes merge
by median like every other case.  Each graph is checked before it is timed: one
session per scope shared by every provider that needs it, closed when the scope ends,
another one in the next scope.

flat N       a service depending on N ``ScopedFactory``s, each injected with the one
             session of the scope (N + 2 providers); against the hand-written
             ``with make_session() as s: Collect(*(Item(s) for ...))``.
chained N    ``Link(Link(...Link(session)))``: a chain of N ``ScopedFactory``s;
             against the hand-written loop building the same chain.
memory       bytes traced by ``tracemalloc`` per open scope holding the request
             graph, 10,000 of them open at once, nested; against 10,000 nested
             hand-written ``with make_session()`` holding the same objects.
open 10,000  time per scope to open 10,000 nested scopes (each resolving the
             request graph) and close them all; and 10,000 concurrent tasks,
             each holding ``async with container.scope()`` open on an ``Event``
             until all are open (bytes per task traced too).  Both against the
             hand-written twin.
named depth  a hit of a ``ScopedFactory(..., scope="app")`` whose instance lives in
             the outer ``scope("app")``, resolved from the innermost of 1, 10, 100
             nested scopes; against the same hit from the named scope itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from common import (
    VERIFIED,
    BenchmarkError,
    RepoA,
    RepoB,
    Service,
    Session,
    Thing,
    close_loop,
    make_async_session,
    make_session,
    measure,
    new_loop,
    session_async_generator,
    session_generator,
    sync_loop,
)

from dependency_injector_scoped import containers, providers

SIZES = (1, 10, 100, 1000)
DEPTHS = (1, 10, 100)
OPEN_AT_ONCE = 10_000


class Item:
    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session


class Collect:
    __slots__ = ("items",)

    def __init__(self, *items: Item) -> None:
        self.items = items


class Link:
    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner


# --- graphs ------------------------------------------------------------------------


def flat_container(size: int) -> Any:
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(session_generator)
    items = [providers.ScopedFactory(Item, container.session) for _ in range(size)]
    for number, item in enumerate(items):
        setattr(container, f"item_{number}", item)
    container.service = providers.ScopedFactory(Collect, *items)
    return container


def chained_container(size: int) -> Any:
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(session_generator)
    link = container.session
    for number in range(size):
        link = providers.ScopedFactory(Link, link)
        setattr(container, f"link_{number}", link)
    container.service = link
    return container


def request_container(initializer: Callable[[], Any]) -> Any:
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(initializer)
    container.repo_a = providers.ScopedFactory(RepoA, container.session)
    container.repo_b = providers.ScopedFactory(RepoB, container.session)
    container.service = providers.ScopedFactory(Service, container.repo_a, container.repo_b)
    return container


def sessions_of(graph: Any) -> Iterator[Session]:
    """Every session a flat, chained or request graph holds."""
    if isinstance(graph, Collect):
        yield from (item.session for item in graph.items)
    elif isinstance(graph, Link):
        while isinstance(graph, Link):
            graph = graph.inner
        yield graph
    elif isinstance(graph, Service):
        yield graph.a.session
        yield graph.b.session
    else:
        raise BenchmarkError(f"scaling: unexpected graph {graph!r}")


def check_graph(name: str, cycle: Callable[[], Any], count: int | None = None) -> None:
    """One session per cycle shared by the whole graph, closed at its end, new next time."""
    seen = []
    for _ in range(2):
        graph = cycle()
        sessions = list(sessions_of(graph))
        if count is not None and isinstance(graph, Collect) and len(sessions) != count:
            raise BenchmarkError(f"{name}: {len(sessions)} items, not {count}")
        first = sessions[0]
        if not isinstance(first, Session) or any(s is not first for s in sessions):
            raise BenchmarkError(f"{name}: the graph got more than one session")
        if not first.closed:
            raise BenchmarkError(f"{name}: the session was still open when the scope ended")
        seen.append(first)
    if seen[0] is seen[1]:
        raise BenchmarkError(f"{name}: two scopes got the same session")
    VERIFIED.append(name)


def loops_for(size: int, loops: int) -> int:
    return max(2, loops * 4 // (size + 4))


# --- providers per scope -------------------------------------------------------------


def flat(size: int, loops: int, rounds: int) -> dict[str, float]:
    container = flat_container(size)
    service = container.service

    def ours() -> Collect:
        with container.scope():
            return service()

    def hand_written() -> Collect:
        with make_session() as session:
            return Collect(*[Item(session) for _ in range(size)])

    for name, cycle in (("ours", ours), ("hand-written", hand_written)):
        check_graph(f"flat {size}, {name}", cycle, size)
    found = measure(
        {"ours": sync_loop(ours), "hand-written": sync_loop(hand_written)},
        loops_for(size, loops),
        rounds,
    )
    return {f"flat {size}: {name}": value for name, value in found.items()}


def chained(size: int, loops: int, rounds: int) -> dict[str, float]:
    container = chained_container(size)
    service = container.service

    def ours() -> Link:
        with container.scope():
            return service()

    def hand_written() -> Link:
        with make_session() as session:
            link: Any = session
            for _ in range(size):
                link = Link(link)
            return link

    for name, cycle in (("ours", ours), ("hand-written", hand_written)):
        check_graph(f"chained {size}, {name}", cycle)
    found = measure(
        {"ours": sync_loop(ours), "hand-written": sync_loop(hand_written)},
        loops_for(size, loops),
        rounds,
    )
    return {f"chained {size}: {name}": value for name, value in found.items()}


# --- many scopes open at once ------------------------------------------------------------


def open_nested(container: Any, count: int) -> Callable[[], list[Service]]:
    """Open ``count`` nested scopes, each resolving the graph, then close them all."""
    service = container.service

    def run() -> list[Service]:
        held = []
        with ExitStack() as stack:
            for _ in range(count):
                stack.enter_context(container.scope())
                held.append(service())
        return held

    return run


def hand_written_nested(count: int) -> Callable[[], list[Service]]:
    def run() -> list[Service]:
        held = []
        with ExitStack() as stack:
            for _ in range(count):
                session = stack.enter_context(make_session())
                held.append(Service(RepoA(session), RepoB(session)))
        return held

    return run


def check_many(name: str, held: list[Service], count: int) -> None:
    sessions = {id(service.a.session) for service in held}
    if len(held) != count or len(sessions) != count:
        raise BenchmarkError(f"{name}: {len(sessions)} sessions for {count} scopes")
    if any(s.b.session is not s.a.session or not s.a.session.closed for s in held):
        raise BenchmarkError(f"{name}: a session was shared or left open")
    VERIFIED.append(name)


def nested_at_once(rounds: int) -> dict[str, float]:
    count = OPEN_AT_ONCE
    ours = open_nested(request_container(session_generator), count)
    hand_written = hand_written_nested(count)
    check_many("10,000 nested scopes", ours(), count)
    check_many("10,000 nested hand-written sessions", hand_written(), count)

    samples: dict[str, list[float]] = {"ours": [], "hand-written": []}
    for _ in range(rounds):  # interleaved; the checks above were the warm-up
        for name, run in (("ours", ours), ("hand-written", hand_written)):
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) / count * 1e9)
    found = {name: statistics.median(values) for name, values in samples.items()}
    return {f"nested 10,000 open: {name}": value for name, value in found.items()}


def traced_bytes(build: Callable[[], Any]) -> float:
    """Bytes still allocated while ``build()``'s result is alive (it returns a closer)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        close = build()
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        close()
    finally:
        tracemalloc.stop()
    return float(during - before)


def nested_memory() -> dict[str, float]:
    count = OPEN_AT_ONCE
    container = request_container(session_generator)
    service = container.service

    def ours() -> Callable[[], None]:
        stack = ExitStack()
        held = []
        for _ in range(count):
            stack.enter_context(container.scope())
            held.append(service())
        return stack.close

    def hand_written() -> Callable[[], None]:
        stack = ExitStack()
        held = []
        for _ in range(count):
            session = stack.enter_context(make_session())
            held.append(Service(RepoA(session), RepoB(session)))
        return stack.close

    def empty() -> Callable[[], None]:
        stack = ExitStack()
        for _ in range(count):
            stack.enter_context(container.scope())
        return stack.close

    return {
        "memory, nested: ours": traced_bytes(ours) / count,
        "memory, nested: hand-written": traced_bytes(hand_written) / count,
        "memory, nested: empty scope": traced_bytes(empty) / count,
    }


def tasks_at_once(rounds: int) -> dict[str, float]:
    """10,000 tasks, each holding its scope open until all are open; time and bytes per task."""
    count = OPEN_AT_ONCE
    container = request_container(session_async_generator)
    service = container.service

    async def ours(opened: list[Service], all_open: asyncio.Event, go: asyncio.Event) -> None:
        async with container.scope():
            opened.append(await service())
            if len(opened) == count:
                all_open.set()
            await go.wait()

    async def hand_written(
        opened: list[Service], all_open: asyncio.Event, go: asyncio.Event
    ) -> None:
        async with make_async_session() as session:
            opened.append(Service(RepoA(session), RepoB(session)))
            if len(opened) == count:
                all_open.set()
            await go.wait()

    async def once(body: Any, traced: bool) -> tuple[float, float, list[Service]]:
        opened: list[Service] = []
        all_open, go = asyncio.Event(), asyncio.Event()
        gc.collect()
        if traced:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if traced else 0
        started = time.perf_counter()
        tasks = [asyncio.create_task(body(opened, all_open, go)) for _ in range(count)]
        await all_open.wait()
        during = tracemalloc.get_traced_memory()[0] if traced else 0
        go.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        if traced:
            tracemalloc.stop()
        return elapsed / count, (during - before) / count, opened

    async def main() -> dict[str, float]:
        for name, body in (("ours", ours), ("hand-written", hand_written)):
            _, _, opened = await once(body, traced=False)
            check_many(f"10,000 tasks, {name}", opened, count)
        samples: dict[str, list[float]] = {"ours": [], "hand-written": []}
        for _ in range(rounds):
            for name, body in (("ours", ours), ("hand-written", hand_written)):
                samples[name].append((await once(body, traced=False))[0])
        found = {
            f"tasks 10,000 open: {name}": statistics.median(values) * 1e9
            for name, values in samples.items()
        }
        for name, body in (("ours", ours), ("hand-written", hand_written)):
            found[f"memory, tasks: {name}"] = (await once(body, traced=True))[1]
        return found

    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        close_loop(loop)


# --- named-scope lookup depth --------------------------------------------------------


def named_depth(loops: int, rounds: int) -> dict[str, float]:
    container = containers.DynamicContainer()
    container.thing = providers.ScopedFactory(Thing, a=1, b=2, scope="app")
    thing = container.thing
    stacks: dict[int, tuple[contextvars.Context, ExitStack]] = {}
    contenders = {}
    instances = []
    for depth in DEPTHS:
        context = contextvars.copy_context()
        stack = ExitStack()

        def open_scopes(stack: ExitStack = stack, depth: int = depth) -> Thing:
            stack.enter_context(container.scope("app"))
            for _ in range(depth - 1):
                stack.enter_context(container.scope())
            return thing()

        instance = context.run(open_scopes)
        if context.run(thing) is not instance:
            raise BenchmarkError(f"named scope at depth {depth}: two hits gave two instances")
        instances.append(instance)
        stacks[depth] = (context, stack)

        def hit(loops: int, context: contextvars.Context = context) -> float:
            return context.run(sync_loop(thing), loops)

        contenders[str(depth)] = hit
    if len({id(instance) for instance in instances}) != len(DEPTHS):
        raise BenchmarkError("named scope: two separate app scopes shared an instance")
    VERIFIED.append("named scope at depths " + ", ".join(map(str, DEPTHS)))
    try:
        found = measure(contenders, loops, rounds)
    finally:
        for context, stack in stacks.values():
            context.run(stack.close)
    return {f"named depth {depth}": value for depth, value in found.items()}


# --- all of it -----------------------------------------------------------------------


def measure_scaling(loops: int, rounds: int) -> tuple[dict[str, float], dict[str, str]]:
    """Every scaling measurement, and why any could not be taken."""
    results: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # a chain of 1,000 resolves recursively
    try:
        for size in SIZES:
            results.update(flat(size, loops, rounds))
            try:
                results.update(chained(size, loops, rounds))
            except RecursionError:
                unavailable[f"chained {size}: ours"] = "RecursionError"
    finally:
        sys.setrecursionlimit(limit)
    results.update(nested_at_once(rounds))
    results.update(tasks_at_once(rounds))
    results.update(nested_memory())
    results.update(named_depth(loops * 5, rounds))
    return results, unavailable
