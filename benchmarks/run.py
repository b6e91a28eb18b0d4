"""Side-by-side benchmarks: scoped providers against dependency-injector's own.

Every contender of a case runs in one process, interleaved round by round, and
each figure is the median over rounds of the time per operation.  Ratios
compare against dependency-injector's compiled providers and against
hand-written code doing the same work.  Run with ``make bench`` or::

    python benchmarks/run.py [--rounds N] [--loops N] [--json] [--processes N]
                             [--cases hit,create,async-hit,sync,async,thread,scaling]
                             [--save | --write-readme] [--output-dir DIR] [--readme FILE]
    python benchmarks/run.py --report saved.json   # the tables of a saved --json output
    python benchmarks/run.py --from-results --write-readme   # rebuild from saved files

``--write-readme`` (the README's figures come from
``python benchmarks/run.py --processes 3 --write-readme``) saves this interpreter's
results as ``benchmarks/results/<implementation>-<major.minor>.json``, then merges every
JSON file there (run the script once with each interpreter that has the package
installed) into the README's section between ``<!-- bench:start -->`` and
``<!-- bench:end -->`` and into ``benchmarks/results/request-cycle.png`` (see
``report.py``); ``--save`` does the same without touching the README.

``--processes N`` runs the script N times, one process after another, and
reports for every row the median of the N per-process ratios (the README's
tables come from this).  Before timing, every request-cycle contender is run
twice and checked (both repositories got the same session, it was closed when
the cycle ended, two cycles got two sessions); a contender that fails stops the
run.

The script also runs on earlier builds of this package (before the async contract): what an
earlier core cannot do is detected and printed as "n/a".

Cases
-----
hit        ``ScopedFactory`` call that returns the scope's instance,
           against an upstream ``Singleton`` call that returns its instance.
create     ``ScopedFactory`` first call in a scope, against an upstream
           ``Factory`` call with the same injections.  Measured as
           (open scope + create + close) minus (open + close).
scope      an empty ``with container.scope(): pass``, against one upstream
           ``Factory`` call (measured with ``create``).
async-hit  ``await container.session()`` for an async-generator
           ``ScopedResource`` whose instance exists in the open ``async with``
           scope, against a sync ``ScopedFactory`` hit in the same scope.
           References: awaiting a trivial coroutine, and upstream's async
           ``Resource`` once initialised.  New contract only (on an earlier core
           the call returns the instance, never an awaitable).
sync       open a scope, resolve ``Service(RepoA(session), RepoB(session))``
           where the session is a generator ``ScopedResource`` and the rest
           are ``ScopedFactory``s, close; against the hand-written
           ``with make_session() as s: Service(RepoA(s), RepoB(s))``.  Twice:
           positional injections, and keyword injections
           (``ScopedFactory(RepoA, session=session)``, README style, against
           ``Service(a=RepoA(session=s), b=RepoB(session=s))``).  Peers (see
           ``peers.py``, each set up as its documentation shows, each checked
           like ours, each reported "not installed" when it is missing): dishka,
           wireup, svcs, that-depends, upstream ``ContextLocalResource`` +
           ``Factory`` (``shutdown()`` after the call, and ``@inject`` with
           ``Closing[Provide[...]]``), FastAPI's ``Depends`` (async only).
async      the same with an async-generator session: ``async with
           container.scope(): await container.service()`` (new contract;
           on an earlier core ``container.service()`` without ``await``, and
           the row says so), against the hand-written ``async with`` twin.
           Each peer's session is an async generator (dishka's registered
           directly with ``provide``), resolved with its own async API.
thread     the async cycle with a SYNC generator session: its finaliser runs
           in the loop's default executor (``close_in_thread=True``, the new
           default) against the same on the loop thread
           (``close_in_thread=False``; an earlier core always closes inline) and
           against the hand-written async cycle.  Hand-written twins: the sync
           session closed inline in the coroutine, and closed through
           ``run_in_executor`` in a copied context.
scaling    a separate group with its own table (see ``scaling.py``): cost per
           scope for 1, 10, 100, 1,000 providers (flat and chained), memory per
           open scope, 10,000 scopes open at once (nested, and in concurrent
           tasks), and a named-scope hit from 1, 10, 100 nested scopes.
"""

from __future__ import annotations

import argparse
import contextvars
import datetime
import importlib.metadata
import inspect
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import peers
import report
import scaling
from common import (
    VERIFIED,
    BenchmarkError,
    RepoA,
    RepoB,
    Service,
    Session,
    Thing,
    async_loop,
    check_async,
    check_sync,
    close_loop,
    make_async_session,
    make_session,
    make_thread_noting_session,
    measure,
    measure_in_loop,
    new_loop,
    session_async_generator,
    session_generator,
    sync_loop,
    thread_noting_session_generator,
)
from dependency_injector import providers as upstream

import dependency_injector_scoped
from dependency_injector_scoped import containers, providers

CASES = ("hit", "create", "async-hit", "sync", "async", "thread", "scaling")

#: case -> peer -> why it did not run ("not installed", ...); filled by the cases
UNAVAILABLE: dict[str, dict[str, str]] = {}


# --- what the installed core can do -------------------------------------------------


def _resource_option(name: str, value: Any) -> bool:
    """Whether ``ScopedResource`` takes ``name`` as an option.

    An earlier core accepts any keyword (as an injection into the initialiser), so
    "no TypeError" proves nothing: the option must not land in ``kwargs`` and
    the provider must report it back.
    """
    try:
        provider = providers.ScopedResource(session_generator, **{name: value})
    except TypeError:
        return False
    return name not in provider.kwargs and getattr(provider, name, None) == value


HAS_EAGER = _resource_option("eager", True)
HAS_CLOSE_IN_THREAD = _resource_option("close_in_thread", False)
NEW_CORE = HAS_EAGER and HAS_CLOSE_IN_THREAD


# --- containers -------------------------------------------------------------------


class Scoped(containers.DeclarativeContainer):
    thing = providers.ScopedFactory(Thing, a=1, b=2)


class Empty(containers.DeclarativeContainer):
    thing = providers.ScopedFactory(Thing, a=1, b=2)


class AsyncHit(containers.DeclarativeContainer):
    session = providers.ScopedResource(session_async_generator)
    thing = providers.ScopedFactory(Thing, a=1, b=2)


def request_container(initializer: Callable[[], Any], *, keywords: bool, **options: Any) -> Any:
    """``Service(RepoA(session), RepoB(session))`` on scoped providers."""

    class Request(containers.DeclarativeContainer):
        session = providers.ScopedResource(initializer, **options)
        if keywords:
            repo_a = providers.ScopedFactory(RepoA, session=session)
            repo_b = providers.ScopedFactory(RepoB, session=session)
            service = providers.ScopedFactory(Service, a=repo_a, b=repo_b)
        else:
            repo_a = providers.ScopedFactory(RepoA, session)
            repo_b = providers.ScopedFactory(RepoB, session)
            service = providers.ScopedFactory(Service, repo_a, repo_b)

    return Request()


# --- correctness checks (once per contender, before timing) ---------------------------


def expect_thread(name: str, *, off_loop: bool) -> Callable[[int], None]:
    main_thread = threading.get_ident()

    def check(closed_in: int) -> None:
        if closed_in is None:
            raise BenchmarkError(f"{name}: the session's finaliser never ran")
        if (closed_in != main_thread) != off_loop:
            where = "the event-loop thread" if closed_in == main_thread else "another thread"
            raise BenchmarkError(f"{name}: the sync finaliser ran on {where}")

    return check


async def is_async_mode(container: Any) -> bool:
    """Whether ``container.service()`` returns an awaitable in an ``async with`` scope."""
    async with container.scope():
        result = container.service()
        if inspect.isawaitable(result):
            await result
            return True
        return False


# --- the cases --------------------------------------------------------------------


def case_hit(loops: int, rounds: int) -> dict[str, float]:
    container = Scoped()
    singleton = upstream.Singleton(Thing, a=1, b=2)
    singleton()
    scope = container.scope()
    scope.__enter__()
    try:
        scoped = container.thing
        if not isinstance(scoped(), Thing) or scoped() is not scoped():
            raise BenchmarkError("ScopedFactory hit: two calls in one scope gave two instances")
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

    def create() -> Thing:
        with container.scope():
            return thing()

    if not isinstance(create(), Thing) or create() is create():
        raise BenchmarkError("ScopedFactory creation: two scopes shared one instance")
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


def case_async_hit(loops: int, rounds: int) -> dict[str, float] | None:
    """``await`` of an async ScopedResource whose instance exists; None on the old contract."""
    container = AsyncHit()
    session = container.session
    thing = container.thing
    upstream_resource = upstream.Resource(session_async_generator)

    async def main() -> dict[str, float] | None:
        async with container.scope():
            result = session()
            if not inspect.isawaitable(result):
                return None  # an earlier core: calls inside an async scope return the instance
            instance = await result
            again = session()
            if not inspect.isawaitable(again) or await again is not instance:
                raise BenchmarkError("async hit: the second call did not await to the instance")
            thing()
            upstream_instance = await upstream_resource.init()

            async def ready() -> Session:
                return instance

            async def awaited_hit(loops: int) -> float:
                started = time.perf_counter()
                for _ in range(loops):
                    await session()
                return time.perf_counter() - started

            async def sync_hit(loops: int) -> float:
                started = time.perf_counter()
                for _ in range(loops):
                    thing()
                return time.perf_counter() - started

            async def trivial_coroutine(loops: int) -> float:
                started = time.perf_counter()
                for _ in range(loops):
                    await ready()
                return time.perf_counter() - started

            async def upstream_hit(loops: int) -> float:
                started = time.perf_counter()
                for _ in range(loops):
                    await upstream_resource()
                return time.perf_counter() - started

            if await upstream_resource() is not upstream_instance:
                raise BenchmarkError("upstream Resource hit: not the initialised instance")
            try:
                return await measure_in_loop(
                    {
                        "await ScopedResource hit": awaited_hit,
                        "ScopedFactory hit": sync_hit,
                        "await trivial coroutine": trivial_coroutine,
                        "await upstream Resource (async) hit": upstream_hit,
                    },
                    loops,
                    rounds,
                )
            finally:
                await upstream_resource.shutdown()

    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        close_loop(loop)


def case_request_sync(loops: int, rounds: int) -> dict[str, float]:
    positional = request_container(session_generator, keywords=False)
    keywords = request_container(session_generator, keywords=True)
    service = positional.service
    service_kw = keywords.service

    def ours() -> Service:
        with positional.scope():
            return service()

    def ours_kw() -> Service:
        with keywords.scope():
            return service_kw()

    def hand_written() -> Service:
        with make_session() as session:
            return Service(RepoA(session), RepoB(session))

    def hand_written_kw() -> Service:
        with make_session() as session:
            return Service(a=RepoA(session=session), b=RepoB(session=session))

    cycles: dict[str, Callable[[], Service]] = {
        "dependency-injector-scoped": ours,
        "hand-written": hand_written,
        "dependency-injector-scoped (keywords)": ours_kw,
        "hand-written (keywords)": hand_written_kw,
    }
    peer_cycles, unavailable = peers.build(peers.SYNC)
    cycles.update(peer_cycles)
    UNAVAILABLE["sync"] = unavailable
    for name, cycle in cycles.items():
        check_sync(f"sync request cycle, {name}", cycle)
    return measure({name: sync_loop(cycle) for name, cycle in cycles.items()}, loops, rounds)


def case_request_async(loops: int, rounds: int) -> tuple[dict[str, float], bool]:
    """The async cycle; also says whether it awaited ``service()`` (the new contract)."""
    loop = new_loop()
    positional = request_container(session_async_generator, keywords=False)
    keywords = request_container(session_async_generator, keywords=True)
    service = positional.service
    service_kw = keywords.service

    awaits = loop.run_until_complete(is_async_mode(positional))
    if loop.run_until_complete(is_async_mode(keywords)) != awaits:
        raise BenchmarkError("async request cycle: keyword and positional graphs disagree")
    if NEW_CORE and not awaits:
        raise BenchmarkError(
            "async request cycle: the core has the new options but `service()` on an "
            "async-generator session returned the instance, not an awaitable"
        )

    if awaits:

        async def ours() -> Service:
            async with positional.scope():
                return await service()

        async def ours_kw() -> Service:
            async with keywords.scope():
                return await service_kw()

    else:  # the old contract: the scope created the session on entry, calls are sync

        async def ours() -> Service:
            async with positional.scope():
                return service()

        async def ours_kw() -> Service:
            async with keywords.scope():
                return service_kw()

    async def hand_written() -> Service:
        async with make_async_session() as session:
            return Service(RepoA(session), RepoB(session))

    async def hand_written_kw() -> Service:
        async with make_async_session() as session:
            return Service(a=RepoA(session=session), b=RepoB(session=session))

    cycles: dict[str, Callable[[], Awaitable[Service]]] = {
        "dependency-injector-scoped": ours,
        "hand-written": hand_written,
        "dependency-injector-scoped (keywords)": ours_kw,
        "hand-written (keywords)": hand_written_kw,
    }
    peer_cycles, unavailable = peers.build(peers.ASYNC)
    cycles.update(peer_cycles)
    UNAVAILABLE["async"] = unavailable
    try:
        for name, cycle in cycles.items():
            check_async(loop, f"async request cycle, {name}", cycle)
        contenders = {name: async_loop(loop, cycle) for name, cycle in cycles.items()}
        return measure(contenders, loops, rounds), awaits
    finally:
        close_loop(loop)


def case_thread(loops: int, rounds: int) -> dict[str, float]:
    """The async cycle with a sync generator session, finalised in a thread or on the loop."""
    loop = new_loop()
    on_loop_options = {"close_in_thread": False} if HAS_CLOSE_IN_THREAD else {}
    on_loop = request_container(thread_noting_session_generator, keywords=False, **on_loop_options)
    service_on_loop = on_loop.service

    async def ours_on_loop() -> Service:
        async with on_loop.scope():
            return service_on_loop()

    async def hand_written() -> Service:
        async with make_async_session() as session:
            return Service(RepoA(session), RepoB(session))

    async def hand_written_sync_session() -> Service:
        with make_thread_noting_session() as session:
            return Service(RepoA(session), RepoB(session))

    async def hand_written_executor() -> Service:
        manager = make_thread_noting_session()
        session = manager.__enter__()
        try:
            result = Service(RepoA(session), RepoB(session))
        except BaseException as error:
            close = contextvars.copy_context().run
            await loop.run_in_executor(
                None, close, manager.__exit__, type(error), error, error.__traceback__
            )
            raise
        close = contextvars.copy_context().run
        await loop.run_in_executor(None, close, manager.__exit__, None, None, None)
        return result

    cycles: dict[str, tuple[Callable[[], Awaitable[Service]], bool | None]] = {}
    if HAS_CLOSE_IN_THREAD:
        in_thread = request_container(thread_noting_session_generator, keywords=False)
        service_in_thread = in_thread.service

        async def ours_in_thread() -> Service:
            async with in_thread.scope():
                return service_in_thread()

        cycles["dependency-injector-scoped, finaliser in a worker thread"] = (ours_in_thread, True)
    cycles["dependency-injector-scoped, finaliser on the loop"] = (ours_on_loop, False)
    cycles["hand-written"] = (hand_written, None)
    cycles["hand-written, sync session closed on the loop"] = (hand_written_sync_session, False)
    cycles["hand-written, sync session closed via run_in_executor"] = (hand_written_executor, True)
    try:
        for name, (cycle, off_loop) in cycles.items():
            label = f"async cycle with a sync session, {name}"
            closed_in = None if off_loop is None else expect_thread(label, off_loop=off_loop)
            check_async(loop, label, cycle, closed_in=closed_in)
        contenders = {name: async_loop(loop, cycle) for name, (cycle, _) in cycles.items()}
        return measure(contenders, loops, rounds)
    finally:
        close_loop(loop)


# --- one process ------------------------------------------------------------------


def run_cases(cases: list[str], loops: int, rounds: int) -> dict[str, Any]:
    """Every selected case in this process; the JSON one process prints."""
    results: dict[str, Any] = {}
    awaits: bool | None = None
    if "hit" in cases:
        results["hit"] = case_hit(loops * 5, rounds)
    if "create" in cases:
        results["create"] = case_create_and_scope(loops, rounds)
    if "async-hit" in cases:
        async_hit = case_async_hit(loops * 5, rounds)
        if async_hit is not None:
            results["async_hit"] = async_hit
        elif NEW_CORE:
            raise BenchmarkError(
                "async hit: the current core returned the instance, not an awaitable"
            )
    if "sync" in cases:
        results["sync"] = case_request_sync(loops, rounds)
    if "async" in cases:
        results["async"], awaits = case_request_async(loops, rounds)
    if "thread" in cases:
        results["thread"] = case_thread(max(loops // 5, 100), rounds)
    if "scaling" in cases:
        results["scaling"], UNAVAILABLE["scaling"] = scaling.measure_scaling(loops, rounds)
    results["info"] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "interpreter": f"{platform.python_implementation()} {platform.python_version()} "
        f"({', '.join(platform.python_build())}; {platform.python_compiler()})",
        "executable": sys.executable,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "build": build_kind(),
        "dependency_injector_scoped": dependency_injector_scoped.__version__,
        "dependency_injector": package_version("dependency-injector"),
        "dishka": package_version("dishka"),
        "peers": {name: peers.version(name) for name in peers.PACKAGES},
        "versions": {
            name: package_version(name)
            for name in dict.fromkeys(["dependency-injector", *peers.PACKAGES.values()])
        },
        "unavailable": UNAVAILABLE,
        "verified": VERIFIED,
        "loops": loops,
        "rounds": rounds,
        "cases": cases,
        "features": {
            "eager": HAS_EAGER,
            "close_in_thread": HAS_CLOSE_IN_THREAD,
            "async_contract": awaits,
        },
        "async_cycle": (
            None
            if awaits is None
            else "await container.service()"
            if awaits
            else "container.service() (old contract, no await)"
        ),
    }
    return results


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def build_kind() -> str:
    package = pathlib.Path(dependency_injector_scoped.__file__).parent
    names = [path.name for path in package.iterdir() if path.suffix in (".so", ".pyd")]
    if any(name.endswith(".abi3.so") for name in names):
        return "abi3 (limited API)"
    return "version-specific"


# --- the report -------------------------------------------------------------------


class Row(NamedTuple):
    table: str
    label: str
    case: str
    ours: str
    baseline: str
    target: float | None = None
    unit: str = "ns"
    system: str | None = None  # for the chart: whose request cycle this row measures
    mode: str | None = None  # "sync" or "async"


def rows(info: dict[str, Any]) -> list[Row]:
    features = info["features"]
    old_async = features["async_contract"] is False
    cycle = "`container.service()`, old contract" if old_async else "`await container.service()`"
    off_loop = "dependency-injector-scoped, finaliser in a worker thread"
    on_loop = "dependency-injector-scoped, finaliser on the loop"
    on_loop_label = (
        "`close_in_thread=False`" if features["close_in_thread"] else "earlier core: always inline"
    )
    executor = "hand-written, sync session closed via run_in_executor"
    t = "targets"
    return [
        Row(t, "`ScopedFactory` hit / upstream `Singleton` hit", "hit", "ScopedFactory hit",
            "upstream Singleton hit", 1.3),
        Row(t, "`ScopedFactory` creation / upstream `Factory` call", "create",
            "ScopedFactory creation", "upstream Factory call", 1.2),
        Row(t, "empty `with scope()` / upstream `Factory` call", "create", "empty scope",
            "upstream Factory call", 1.5),
        Row(t, "sync request cycle / hand-written `with make_session()`", "sync",
            "dependency-injector-scoped", "hand-written", 1.3, system=OURS, mode="sync"),
        Row(t, "sync request cycle, keyword injections / hand-written (keywords)", "sync",
            "dependency-injector-scoped (keywords)", "hand-written (keywords)", 1.3),
        Row(t, f"async request cycle ({cycle}) / hand-written `async with`", "async",
            "dependency-injector-scoped", "hand-written", 1.5, system=OURS, mode="async"),
        Row(t, f"async request cycle ({cycle}), keyword injections / hand-written (keywords)",
            "async", "dependency-injector-scoped (keywords)", "hand-written (keywords)", 1.5),
        Row(t, "`await` async `ScopedResource` hit / sync `ScopedFactory` hit", "async_hit",
            "await ScopedResource hit", "ScopedFactory hit", 2.0),
        Row("thread", "sync finaliser in a worker thread (default) / on the loop "
            "(`close_in_thread=False`)", "thread", off_loop, on_loop),
        Row("thread", "sync finaliser in a worker thread (default) / hand-written async cycle",
            "thread", off_loop, "hand-written"),
        Row("thread", f"sync finaliser on the loop ({on_loop_label}) / hand-written async cycle",
            "thread", on_loop, "hand-written"),
        Row("thread", "sync finaliser on the loop / hand-written twin (sync session on the loop)",
            "thread", on_loop, "hand-written, sync session closed on the loop"),
        Row("thread", "sync finaliser in a worker thread / hand-written `run_in_executor` twin",
            "thread", off_loop, executor),
        Row("thread", "hand-written `run_in_executor` twin / hand-written async cycle",
            "thread", executor, "hand-written"),
        Row("thread", "hand-written sync session closed on the loop / hand-written async cycle",
            "thread", "hand-written, sync session closed on the loop", "hand-written"),
        Row("peers", "`await` trivial coroutine / sync `ScopedFactory` hit", "async_hit",
            "await trivial coroutine", "ScopedFactory hit"),
        Row("peers", "`await` upstream async `Resource` hit / sync `ScopedFactory` hit",
            "async_hit", "await upstream Resource (async) hit", "ScopedFactory hit"),
        *peer_rows(),
        *scaling_rows(),
    ]  # fmt: skip


OURS = "dependency-injector-scoped"


def peer_rows() -> list[Row]:
    found = []
    for mode, builders in (("sync", peers.SYNC), ("async", peers.ASYNC)):
        for name in builders:
            found.append(
                Row(
                    "peers",
                    f"{mode} request cycle: {name} / hand-written",
                    mode,
                    name,
                    "hand-written",
                    system=name,
                    mode=mode,
                )
            )
    return found


def scaling_rows() -> list[Row]:
    s = "scaling"
    found = []
    for shape in ("flat", "chained"):
        for size in scaling.SIZES:
            what = (
                f"a service on {size} `ScopedFactory`s of one session"
                if shape == "flat"
                else f"a chain of {size} `ScopedFactory`s"
            )
            found.append(
                Row(
                    s,
                    f"{shape}: {what}, per scope / hand-written",
                    s,
                    f"{shape} {size}: ours",
                    f"{shape} {size}: hand-written",
                    unit="ns/scope",
                )
            )
    found += [
        Row(
            s,
            "10,000 nested scopes open at once, per scope / hand-written",
            s,
            "nested 10,000 open: ours",
            "nested 10,000 open: hand-written",
            unit="ns/scope",
        ),
        Row(
            s,
            "10,000 tasks each holding its scope open on an `Event`, per task / hand-written",
            s,
            "tasks 10,000 open: ours",
            "tasks 10,000 open: hand-written",
            unit="ns/task",
        ),
        Row(
            s,
            "memory per open scope with the request graph (10,000 nested) / hand-written",
            s,
            "memory, nested: ours",
            "memory, nested: hand-written",
            unit="bytes",
        ),
        Row(
            s,
            "memory per open empty scope (10,000 nested) / hand-written session + graph",
            s,
            "memory, nested: empty scope",
            "memory, nested: hand-written",
            unit="bytes",
        ),
        Row(
            s,
            "memory per task holding its scope open (10,000 tasks) / hand-written",
            s,
            "memory, tasks: ours",
            "memory, tasks: hand-written",
            unit="bytes",
        ),
    ]
    for depth in scaling.DEPTHS[1:]:
        found.append(
            Row(
                s,
                f"named-scope hit from {depth} nested scopes / from the named scope itself",
                s,
                f"named depth {depth}",
                "named depth 1",
            )
        )
    return found


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row: the median of each side and the median of the per-process ratios."""
    summary = []
    info = runs[0]["info"]
    selected = set(info["cases"])
    unavailable = info.get("unavailable", {})
    for row in rows(info):
        if row.case.replace("_", "-") not in selected:
            continue  # not run at all; "n/a" is kept for what the installed core cannot do
        pairs = [
            (run[row.case][row.ours], run[row.case][row.baseline])
            for run in runs
            if row.ours in run.get(row.case, {}) and row.baseline in run.get(row.case, {})
        ]
        entry: dict[str, Any] = {
            "table": row.table,
            "label": row.label,
            "target": row.target,
            "unit": row.unit,
            "system": row.system,
            "mode": row.mode,
        }
        if pairs:
            ratios = [ours / baseline for ours, baseline in pairs]
            entry.update(
                ours_ns=statistics.median(ours for ours, _ in pairs),
                baseline_ns=statistics.median(baseline for _, baseline in pairs),
                ratios=ratios,
                ratio=statistics.median(ratios),
            )
        else:
            reason = unavailable.get(row.case, {}).get(row.ours)
            if reason is not None:
                entry["reason"] = reason
        summary.append(entry)
    return summary


TABLES = {
    "targets": ("case", "ours (ns)", "baseline (ns)"),
    "thread": ("async cycle, sync generator session", "contender (ns)", "baseline (ns)"),
    "peers": ("peer / reference", "peer (ns)", "baseline (ns)"),
    "scaling": ("scaling", "ours", "baseline"),
}


def describe(info: dict[str, Any], runs: int) -> list[str]:
    """The lines saying where, when and how the figures were measured."""
    how = f"medians of {runs} per-process ratios" if runs > 1 else "medians"
    features = info["features"]
    new_core = features["eager"] and features["close_in_thread"]
    return [
        f"Python {info['python']} on {info['machine']}, {info['build']} build, "
        f"{info['rounds']} rounds x {info['loops']} loops, {how}",
        "core: "
        + ("new (eager=, close_in_thread=)" if new_core else "old (no eager=/close_in_thread=)")
        + (f"; async cycle: {info['async_cycle']}" if info.get("async_cycle") else "")
        + f"; features: {json.dumps(features)}",
    ]


def render_tables(summary: list[dict[str, Any]], runs: int) -> list[str]:
    """The markdown tables of one interpreter's summary."""
    many = runs > 1
    lines: list[str] = []
    for table, (first, ours, baseline) in TABLES.items():
        entries = [entry for entry in summary if entry["table"] == table]
        if not entries:
            continue
        lines.append("")
        extra = " per process |" if many else ""
        target = " target |" if table == "targets" else ""
        unit = " unit |" if table == "scaling" else ""
        lines.append(f"| {first} |{unit} {ours} | {baseline} | ratio |{extra}{target}")
        lines.append(
            "|---|"
            + ("---|" if unit else "")
            + "---:|---:|---:|"
            + ("---|" if many else "")
            + ("---:|" if target else "")
        )
        for entry in entries:
            cells = [entry.get("unit", "ns")] if unit else []
            if "ratio" in entry:
                ratio = entry["ratio"]
                cells += [f"{entry['ours_ns']:.0f}", f"{entry['baseline_ns']:.0f}", f"{ratio:.2f}x"]
                if many:
                    cells.append(" / ".join(f"{value:.2f}" for value in entry["ratios"]))
            else:
                ratio = None
                missing = entry.get("reason", "n/a")
                cells += [missing, "n/a", "n/a"] + (["n/a"] if many else [])
            if target:
                verdict = "" if ratio is None else " ok" if ratio <= entry["target"] else " MISSED"
                cells.append(f"<= {entry['target']}x{verdict}")
            lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return lines


def print_report(runs: list[dict[str, Any]]) -> None:
    for line in describe(runs[0]["info"], len(runs)) + render_tables(summarise(runs), len(runs)):
        print(line)


# --- several processes ------------------------------------------------------------


def run_processes(options: argparse.Namespace) -> list[dict[str, Any]]:
    command = [
        sys.executable,
        __file__,
        "--json",
        "--rounds",
        str(options.rounds),
        "--loops",
        str(options.loops),
        "--cases",
        ",".join(options.cases),
    ]
    runs = []
    for number in range(1, options.processes + 1):
        print(f"process {number}/{options.processes} ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise BenchmarkError(f"process {number} exited with {done.returncode}")
        runs.append(json.loads(done.stdout))
    return runs


def parse_cases(text: str) -> list[str]:
    cases = [case.strip() for case in text.split(",") if case.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown}; choose from {CASES}")
    return [case for case in CASES if case in cases]


ROOT = pathlib.Path(__file__).resolve().parent.parent


def write_results(options: argparse.Namespace, document: dict[str, Any] | None) -> None:
    """Save this interpreter's document, then rebuild the chart and README from every file."""
    directory = pathlib.Path(options.output_dir)
    if document is not None:
        print(f"wrote {report.save(document, directory)}", file=sys.stderr)
    documents = report.load_all(directory)
    if not documents:
        raise BenchmarkError(f"no results in {directory}")
    chart = directory / report.CHART
    why_not = report.draw_chart(documents, chart)
    if why_not is None:
        print(f"wrote {chart}", file=sys.stderr)
    else:
        print(f"chart skipped: {why_not}", file=sys.stderr)
    if options.write_readme:
        readme = pathlib.Path(options.readme)
        shown = report.relative(chart, readme.parent) if why_not is None else None
        report.rewrite_readme(readme, report.section(documents, shown, render_tables))
        names = ", ".join(report.short(document) for document in documents)
        print(f"rewrote {readme} (Python {names})", file=sys.stderr)
        end_to_end = report.load_e2e(directory)
        if end_to_end and report.has_section(readme, *report.E2E_MARKERS):
            report.rewrite_readme(readme, report.e2e_section(end_to_end), *report.E2E_MARKERS)
            print(f"rewrote {readme}'s end-to-end section", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--loops", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="run N processes one after another and report medians of per-process ratios",
    )
    parser.add_argument(
        "--cases",
        type=parse_cases,
        default=list(CASES),
        help=f"comma-separated subset of {','.join(CASES)}",
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="print the tables of a saved --json output instead of measuring",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="save the results as OUTPUT_DIR/<python>.json and redraw the chart from all saved",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="--save, then rewrite the README's section between the bench markers",
    )
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: rebuild the chart (and README with --write-readme) from the "
        "JSON files already in OUTPUT_DIR",
    )
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    options = parser.parse_args(argv)

    if options.report:
        with open(options.report) as saved:
            document = json.load(saved)
        print_report(document.get("runs", [document]))
        return 0
    try:
        if options.from_results:
            write_results(options, None)
            return 0
        if options.processes > 0:
            runs = run_processes(options)
        else:
            runs = [run_cases(options.cases, options.loops, options.rounds)]
    except BenchmarkError as error:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1

    document = {
        "info": dict(runs[0]["info"], processes=len(runs)),
        "summary": summarise(runs),
        "runs": runs,
    }
    if options.save or options.write_readme:
        try:
            write_results(options, document)
        except (BenchmarkError, ValueError) as error:
            print(f"results not written: {error}", file=sys.stderr)
            return 1
    if options.json:
        print(json.dumps(document if options.processes > 0 else runs[0], indent=2))
        return 0
    print_report(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
