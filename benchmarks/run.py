"""Side-by-side benchmarks: scoped providers against dependency-injector's own.

Every contender runs in this one process, interleaved round by round, and each
figure is the median over rounds of the time per operation.  Ratios compare
against dependency-injector's compiled providers and against hand-written
code doing the same work.  Run with ``make bench`` or::

    python benchmarks/run.py [--rounds N] [--json]

Cases
-----
hit        ``ScopedFactory`` call that returns the scope's instance,
           against an upstream ``Singleton`` call that returns its instance.
create     ``ScopedFactory`` first call in a scope, against an upstream
           ``Factory`` call with the same injections.  Measured as
           (open scope + create + close) minus (open + close).
scope      an empty ``with container.scope(): pass``, against one upstream
           ``Factory`` call.
request    open a scope, resolve ``Service(RepoA(session), RepoB(session))``
           where the session is a generator ``ScopedResource`` (async: async
           generator) and the rest are ``ScopedFactory``s, close; against the
           hand-written ``with make_session() as s: Service(RepoA(s), RepoB(s))``
           (async: its ``async with`` twin).  Also measured: the same graph on
           upstream ``ContextLocalResource`` + ``Factory`` (one fresh context
           per request, ``shutdown()`` at the end), and on dishka when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from dependency_injector import containers as upstream_containers
from dependency_injector import providers as upstream

import dependency_injector_scoped
from dependency_injector_scoped import containers, providers

# --- the objects every contender builds ---------------------------------------------


class Session:
    """Stands in for a database session: created and closed once per request."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        self.closed = False

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


def session_generator():
    session = Session()
    try:
        yield session
    finally:
        session.close()


async def session_async_generator():
    session = Session()
    try:
        yield session
    finally:
        session.close()


make_session = contextmanager(session_generator)
make_async_session = asynccontextmanager(session_async_generator)


# --- containers -------------------------------------------------------------------


class Scoped(containers.DeclarativeContainer):
    thing = providers.ScopedFactory(Thing, a=1, b=2)


class Empty(containers.DeclarativeContainer):
    thing = providers.ScopedFactory(Thing, a=1, b=2)


class Request(containers.DeclarativeContainer):
    session = providers.ScopedResource(session_generator)
    repo_a = providers.ScopedFactory(RepoA, session)
    repo_b = providers.ScopedFactory(RepoB, session)
    service = providers.ScopedFactory(Service, repo_a, repo_b)


class AsyncRequest(containers.DeclarativeContainer):
    session = providers.ScopedResource(session_async_generator)
    repo_a = providers.ScopedFactory(RepoA, session)
    repo_b = providers.ScopedFactory(RepoB, session)
    service = providers.ScopedFactory(Service, repo_a, repo_b)


class UpstreamRequest(upstream_containers.DeclarativeContainer):
    session = upstream.ContextLocalResource(session_generator)
    service = upstream.Factory(
        Service, upstream.Factory(RepoA, session), upstream.Factory(RepoB, session)
    )


class UpstreamAsyncRequest(upstream_containers.DeclarativeContainer):
    session = upstream.ContextLocalResource(session_async_generator)
    service = upstream.Factory(
        Service, upstream.Factory(RepoA, session), upstream.Factory(RepoB, session)
    )


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
    for run in contenders.values():  # warm-up: settles upstream's async mode, caches
        run(max(loops // 10, 100))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            samples[name].append(per_op_ns(run, loops))
    return {name: statistics.median(values) for name, values in samples.items()}


# --- the cases --------------------------------------------------------------------


def case_hit(loops: int, rounds: int) -> dict[str, float]:
    container = Scoped()
    singleton = upstream.Singleton(Thing, a=1, b=2)
    singleton()
    scope = container.scope()
    scope.__enter__()
    try:
        scoped = container.thing
        scoped()
        return measure(
            {
                "ScopedFactory hit": sync_loop(scoped),
                "upstream Singleton hit": sync_loop(singleton),
            },
            loops,
            rounds,
        )
    finally:
        scope.__exit__(None, None, None)


def case_create_and_scope(loops: int, rounds: int) -> dict[str, float]:
    container = Empty()
    factory = upstream.Factory(Thing, a=1, b=2)
    thing = container.thing

    def empty() -> None:
        with container.scope():
            pass

    def create() -> None:
        with container.scope():
            thing()

    results = measure(
        {
            "empty scope": sync_loop(empty),
            "scope + ScopedFactory creation": sync_loop(create),
            "upstream Factory call": sync_loop(factory),
        },
        loops,
        rounds,
    )
    results["ScopedFactory creation"] = (
        results["scope + ScopedFactory creation"] - results["empty scope"]
    )
    return results


def dishka_sync() -> Callable[[], Any] | None:
    try:
        from dishka import Provider, Scope, make_container, provide
    except ImportError:
        return None

    class RequestProvider(Provider):
        @provide(scope=Scope.REQUEST)
        def session(self) -> Iterator[Session]:
            yield from session_generator()

        repo_a = provide(RepoA, scope=Scope.REQUEST)
        repo_b = provide(RepoB, scope=Scope.REQUEST)
        service = provide(Service, scope=Scope.REQUEST)

    container = make_container(RequestProvider())

    def cycle() -> None:
        with container() as request:
            request.get(Service)

    return cycle


def dishka_async() -> Callable[[], Any] | None:
    try:
        from dishka import Provider, Scope, make_async_container, provide
    except ImportError:
        return None

    class RequestProvider(Provider):
        @provide(scope=Scope.REQUEST)
        async def session(self) -> AsyncIterator[Session]:
            async with make_async_session() as session:
                yield session

        repo_a = provide(RepoA, scope=Scope.REQUEST)
        repo_b = provide(RepoB, scope=Scope.REQUEST)
        service = provide(Service, scope=Scope.REQUEST)

    container = make_async_container(RequestProvider())

    async def cycle() -> None:
        async with container() as request:
            await request.get(Service)

    return cycle


def case_request_sync(loops: int, rounds: int) -> dict[str, float]:
    container = Request()
    service = container.service
    upstream_container = UpstreamRequest()

    def ours() -> None:
        with container.scope():
            service()

    def hand_written() -> None:
        with make_session() as session:
            Service(RepoA(session), RepoB(session))

    def upstream_request() -> None:
        upstream_container.service()
        upstream_container.session.shutdown()

    def upstream_cycle() -> None:
        contextvars.copy_context().run(upstream_request)

    contenders = {
        "dependency-injector-scoped": sync_loop(ours),
        "hand-written": sync_loop(hand_written),
        "upstream ContextLocalResource": sync_loop(upstream_cycle),
    }
    dishka = dishka_sync()
    if dishka is not None:
        contenders["dishka"] = sync_loop(dishka)
    return measure(contenders, loops, rounds)


def case_request_async(loops: int, rounds: int) -> dict[str, float]:
    loop = asyncio.new_event_loop()
    container = AsyncRequest()
    service = container.service
    upstream_container = UpstreamAsyncRequest()

    async def ours() -> None:
        async with container.scope():
            service()

    async def hand_written() -> None:
        async with make_async_session() as session:
            Service(RepoA(session), RepoB(session))

    async def upstream_request() -> None:
        await upstream_container.service()
        await upstream_container.session.shutdown()

    def upstream_cycle() -> Any:
        # A fresh context per request, as a server gives every request its own task.
        return contextvars.copy_context().run(loop.create_task, upstream_request())

    contenders = {
        "dependency-injector-scoped": async_loop(loop, ours),
        "hand-written": async_loop(loop, hand_written),
        "upstream ContextLocalResource": async_loop(loop, upstream_cycle),
    }
    dishka = dishka_async()
    if dishka is not None:
        contenders["dishka"] = async_loop(loop, dishka)
    try:
        return measure(contenders, loops, rounds)
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--loops", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    options = parser.parse_args(argv)
    loops, rounds = options.loops, options.rounds

    hit = case_hit(loops * 5, rounds)
    create = case_create_and_scope(loops, rounds)
    sync = case_request_sync(loops, rounds)
    async_ = case_request_async(loops, rounds)

    rows = [
        (
            "ScopedFactory hit / upstream Singleton hit",
            hit["ScopedFactory hit"],
            hit["upstream Singleton hit"],
            1.3,
        ),
        (
            "ScopedFactory creation / upstream Factory call",
            create["ScopedFactory creation"],
            create["upstream Factory call"],
            1.2,
        ),
        (
            "empty `with scope()` / upstream Factory call",
            create["empty scope"],
            create["upstream Factory call"],
            1.5,
        ),
        (
            "sync request cycle / hand-written",
            sync["dependency-injector-scoped"],
            sync["hand-written"],
            1.3,
        ),
        (
            "async request cycle / hand-written",
            async_["dependency-injector-scoped"],
            async_["hand-written"],
            1.5,
        ),
    ]
    peers = []
    for label, results in (("sync", sync), ("async", async_)):
        for name in ("upstream ContextLocalResource", "dishka"):
            if name in results:
                peers.append(
                    (
                        f"{label} request cycle: {name} / hand-written",
                        results[name],
                        results["hand-written"],
                    )
                )

    build = (
        "abi3 (limited API)"
        if any(name.endswith(".abi3.so") for name in _extension_files())
        else "version-specific"
    )
    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "build": build,
        "dependency_injector_scoped": dependency_injector_scoped.__version__,
        "loops": loops,
        "rounds": rounds,
    }
    if options.json:
        print(
            json.dumps(
                {"info": info, "hit": hit, "create": create, "sync": sync, "async": async_},
                indent=2,
            )
        )
        return 0

    print(
        f"Python {info['python']} on {info['machine']}, {build} build, {rounds} rounds x {loops} loops, medians"
    )
    print()
    print("| case | ours (ns) | baseline (ns) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for label, ours, baseline, target in rows:
        verdict = "ok" if ours / baseline <= target else "MISSED"
        print(
            f"| {label} | {ours:.0f} | {baseline:.0f} | {ours / baseline:.2f}x | <= {target}x {verdict} |"
        )
    print()
    print("| peer | peer (ns) | hand-written (ns) | ratio |")
    print("|---|---:|---:|---:|")
    for label, peer, baseline in peers:
        print(f"| {label} | {peer:.0f} | {baseline:.0f} | {peer / baseline:.2f}x |")
    return 0


def _extension_files() -> list[str]:
    import pathlib

    package = pathlib.Path(dependency_injector_scoped.__file__).parent
    return [path.name for path in package.iterdir() if path.suffix in (".so", ".pyd")]


if __name__ == "__main__":
    sys.exit(main())
