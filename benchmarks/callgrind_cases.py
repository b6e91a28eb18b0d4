"""Request-cycle cases for counting instructions with callgrind (see benchmarks/callgrind.sh).

``python benchmarks/callgrind_cases.py CASE N`` runs CASE N times after 50 warm-up runs.

Sync: ``cycle`` / ``hand`` (keyword injections), ``pcycle`` / ``phand`` (positional),
``create`` (one ``ScopedFactory`` created in a fresh scope), ``empty`` (an empty ``with``
scope), ``factory`` (an upstream ``Factory`` call), ``singleton`` (an upstream ``Singleton``
hit), ``shit`` (a ``ScopedFactory`` hit).

Async: ``acycle`` (``async with container.scope(): await container.service()``), ``ahand``
(the hand-written ``async with``), ``ahit`` (``await`` of an existing async instance),
``aempty`` (an empty ``async with`` scope), ``hit`` (a sync hit inside ``async with``).

dishka, set up as ``peers.py`` does: ``dcycle`` (sync) and ``adcycle`` (async).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import peers
from common import RepoA, RepoB, Service, Session
from dependency_injector import providers as upstream

from dependency_injector_scoped import containers, providers


async def async_session() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.close()


def sync_session() -> Iterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.close()


class Async(containers.DeclarativeContainer):
    session = providers.ScopedResource(async_session)
    a = providers.ScopedFactory(RepoA, session)
    b = providers.ScopedFactory(RepoB, session)
    service = providers.ScopedFactory(Service, a, b)
    thing = providers.ScopedFactory(object)


class Keywords(containers.DeclarativeContainer):
    session = providers.ScopedResource(sync_session)
    a = providers.ScopedFactory(RepoA, session=session)
    b = providers.ScopedFactory(RepoB, session=session)
    service = providers.ScopedFactory(Service, a=a, b=b)
    thing = providers.ScopedFactory(object)


class Positional(containers.DeclarativeContainer):
    session = providers.ScopedResource(sync_session)
    a = providers.ScopedFactory(RepoA, session)
    b = providers.ScopedFactory(RepoB, session)
    service = providers.ScopedFactory(Service, a, b)


ASYNC = Async()
KEYWORDS = Keywords()
POSITIONAL = Positional()
make_async_session = asynccontextmanager(async_session)
make_sync_session = contextmanager(sync_session)
FACTORY = upstream.Factory(object)
SINGLETON = upstream.Singleton(object)


def sync_cases() -> dict[str, Callable[[int], None]]:
    def cycle(n: int) -> None:
        for _ in range(n):
            with KEYWORDS.scope():
                KEYWORDS.service()

    def hand(n: int) -> None:
        for _ in range(n):
            with make_sync_session() as session:
                Service(a=RepoA(session=session), b=RepoB(session=session))

    def pcycle(n: int) -> None:
        for _ in range(n):
            with POSITIONAL.scope():
                POSITIONAL.service()

    def phand(n: int) -> None:
        for _ in range(n):
            with make_sync_session() as session:
                Service(RepoA(session), RepoB(session))

    def create(n: int) -> None:
        for _ in range(n):
            with KEYWORDS.scope():
                KEYWORDS.thing()

    def empty(n: int) -> None:
        for _ in range(n):
            with KEYWORDS.scope():
                pass

    def factory(n: int) -> None:
        for _ in range(n):
            FACTORY()

    def singleton(n: int) -> None:
        SINGLETON()
        for _ in range(n):
            SINGLETON()

    def dcycle(n: int) -> None:
        cycle = peers.dishka_sync()
        for _ in range(n):
            cycle()

    def shit(n: int) -> None:
        with KEYWORDS.scope():
            KEYWORDS.thing()
            for _ in range(n):
                KEYWORDS.thing()

    return {
        function.__name__: function
        for function in (
            cycle,
            hand,
            pcycle,
            phand,
            create,
            empty,
            factory,
            singleton,
            shit,
            dcycle,
        )
    }


async def run_async(case: str, n: int) -> None:
    if case == "acycle":
        for _ in range(n):
            async with ASYNC.scope():
                await ASYNC.service()
    elif case == "ahand":
        for _ in range(n):
            async with make_async_session() as session:
                Service(RepoA(session), RepoB(session))
    elif case == "ahit":
        async with ASYNC.scope():
            await ASYNC.session()
            for _ in range(n):
                await ASYNC.session()
    elif case == "hit":
        async with ASYNC.scope():
            ASYNC.thing()
            for _ in range(n):
                ASYNC.thing()
    elif case == "adcycle":
        cycle = peers.dishka_async()
        for _ in range(n):
            await cycle()
    elif case == "aempty":
        for _ in range(n):
            async with ASYNC.scope():
                pass
    else:
        raise SystemExit(f"unknown case {case!r}")


def main() -> None:
    case, n = sys.argv[1], int(sys.argv[2])
    cases = sync_cases()
    if case in cases:
        cases[case](50)
        cases[case](n)
        return
    loop = asyncio.new_event_loop()
    loop.run_until_complete(run_async(case, 50))
    loop.run_until_complete(run_async(case, n))
    loop.close()


if __name__ == "__main__":
    main()
