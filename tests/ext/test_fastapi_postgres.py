"""FastAPI with ``Scoped`` sessions on PostgreSQL, behind a real uvicorn server on 127.0.0.1.

Two stacks: ``async def`` endpoints on asyncpg and ``def`` endpoints on
psycopg, each with a pool of five connections and no overflow
(``fastapi_postgres_support``).  The server runs in a process of its own, so
the load client and the server use separate cores.  Load: one session and
one transaction per request, shared by two repositories, nothing left
checked out or idle in a transaction.  Faults: a backend terminated
mid-request, a client gone during a streamed response, a unique violation
at commit, and a request whose two repositories lock each other out.  Every
test uses tables of its own, dropped at the end.
"""

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from support import require_module

require_module("fastapi")
httpx = require_module("httpx")
require_module("uvicorn")
require_module("asyncpg")

from .fastapi_postgres_support import POOL, SLEEP_SECONDS, Tables  # noqa: E402
from .fastapi_support import CLIENT_TIMEOUT, SERVER_TIMEOUT, wait_until  # noqa: E402

pytestmark = pytest.mark.postgres

STACKS = ["asyncpg", "psycopg"]
LOAD_REQUESTS = 2_000
LOAD_CONCURRENCY = 100
TESTS_DIRECTORY = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def tables(postgres_url: str) -> Iterator[Tables]:
    """Fresh ``records`` (deferred unique names) and ``counters`` tables, dropped afterwards."""
    suffix = uuid.uuid4().hex[:12]
    names = Tables(f"dis_fa_records_{suffix}", f"dis_fa_counters_{suffix}", f"dis-fa-{suffix}")
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            f"create table {names.records} (id serial primary key, request_id text not null, "
            "repository text not null, txid bigint not null, "
            "name text unique deferrable initially deferred)"
        )
        connection.execute(
            f"create table {names.counters} (id int primary key, value int not null)"
        )
        connection.execute(f"insert into {names.counters} values (1, 0)")
    try:
        yield names
    finally:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
                (names.application,),
            )
            connection.execute(f"drop table if exists {names.records}, {names.counters}")


def query(postgres_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql``, through a connection of its own (committed data only)."""
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
        return connection.execute(sql, params).fetchall()


@dataclass
class Service:
    """A running server of one stack: its URL, tables and database."""

    stack: str
    base_url: str
    tables: Tables
    postgres_url: str

    async def stats(self) -> dict[str, Any]:
        """The server's journal of sessions, its pool's checked-out count and its loop thread."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=CLIENT_TIMEOUT) as client:
            response = await client.get("/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def rows_of(self, request_id: str) -> list[tuple[Any, ...]]:
        """The committed rows of one request."""
        return query(
            self.postgres_url,
            f"select repository, txid from {self.tables.records} where request_id = %s",
            request_id,
        )

    def idle_in_transaction(self) -> int:
        """How many of the app's backends are idle inside a transaction."""
        rows = query(
            self.postgres_url,
            "select count(*) from pg_stat_activity where application_name = %s "
            "and state like 'idle in transaction%%'",
            self.tables.application,
        )
        return int(rows[0][0])

    def client(self, connections: int = 1) -> Any:
        """A keep-alive client with up to ``connections`` connections."""
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=self.base_url, timeout=CLIENT_TIMEOUT, limits=limits)


def started(base_url: str, process: "subprocess.Popen[bytes]") -> None:
    """Wait until the server answers, within ``SERVER_TIMEOUT``."""
    deadline = time.monotonic() + SERVER_TIMEOUT
    while True:
        assert process.poll() is None, "the server exited during start-up"
        try:
            httpx.get(f"{base_url}/stats", timeout=1.0).raise_for_status()
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.05)


@pytest.fixture(params=STACKS)
async def service(
    request: pytest.FixtureRequest, postgres_url: str, tables: Tables
) -> AsyncIterator[Service]:
    """The app of one stack served by uvicorn in a subprocess on a free 127.0.0.1 port."""
    stack = str(request.param)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIRECTORY), *filter(None, [environment.get("PYTHONPATH")])]
    )
    arguments = [stack, postgres_url, tables.records, tables.counters, tables.application]
    with listener:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ext.fastapi_postgres_support",
                *arguments,
                str(listener.fileno()),
            ],
            pass_fds=[listener.fileno()],
            env=environment,
            cwd=TESTS_DIRECTORY,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        started(base_url, process)
        yield Service(stack, base_url, tables, postgres_url)
    finally:
        process.terminate()
        try:
            process.wait(SERVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(SERVER_TIMEOUT)
            raise
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it.
    assert process.returncode in (0, -signal.SIGTERM), (
        f"the server exited with {process.returncode}"
    )


async def run_load(client: Any, count: int, prefix: str) -> list[Any]:
    """POST ``count`` records with ``LOAD_CONCURRENCY`` workers; the responses, in order."""
    responses: list[Any] = [None] * count
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            responses[index] = await client.post(f"/record/{prefix}-{index}")

    await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    return responses


# Load ------------------------------------------------------------------------------------


async def test_load_one_session_and_one_transaction_per_request(service: Service) -> None:
    """2,000 requests at 100 concurrency on a 5-connection pool: no error, one transaction each, all committed."""
    async with service.client(LOAD_CONCURRENCY) as client:
        started_at = time.perf_counter()
        responses = await run_load(client, LOAD_REQUESTS, "load")
        elapsed = time.perf_counter() - started_at
    print(
        f"\n{service.stack}: {LOAD_REQUESTS} requests at {LOAD_CONCURRENCY} concurrency "
        f"in {elapsed:.2f} s = {LOAD_REQUESTS / elapsed:.0f} requests/s"
    )
    assert [response.status_code for response in responses] == [200] * LOAD_REQUESTS
    bodies = [response.json() for response in responses]
    assert all(body["shared"] for body in bodies)
    assert all(body["txids"][0] == body["txids"][1] for body in bodies)

    stats = await service.stats()
    assert len(stats["created"]) == LOAD_REQUESTS
    assert stats["outcomes"] == ["commit"] * LOAD_REQUESTS
    records = service.tables.records
    (totals,) = query(
        service.postgres_url,
        f"select count(*), count(distinct request_id), count(distinct txid) from {records}",
    )
    assert totals == (2 * LOAD_REQUESTS, LOAD_REQUESTS, LOAD_REQUESTS)
    mixed = query(
        service.postgres_url,
        f"select request_id from {records} group by request_id "
        "having count(distinct txid) <> 1 or count(distinct repository) <> 2",
    )
    assert mixed == []
    assert stats["checked_out"] == 0
    assert service.idle_in_transaction() == 0

    # Sessions of async endpoints are created on the loop; of def endpoints, never there.
    if service.stack == "asyncpg":
        assert set(stats["created"]) == {stats["loop_thread"]}
    else:
        assert stats["loop_thread"] not in stats["created"]


# Faults ----------------------------------------------------------------------------------


async def backend_running(service: Service, marker: str) -> int:
    """The pid of the app's backend whose query contains ``marker``, once there is one."""
    found: list[int] = []

    def look() -> bool:
        rows = query(
            service.postgres_url,
            "select pid from pg_stat_activity where application_name = %s and query like %s "
            "and pid <> pg_backend_pid()",
            service.tables.application,
            f"%{marker}%",
        )
        found.extend(row[0] for row in rows)
        return bool(found)

    await wait_until(look, what=f"a backend running {marker!r}")
    return found[0]


async def test_terminated_backend_fails_its_request_only_and_the_pool_recovers(
    service: Service,
) -> None:
    """pg_terminate_backend mid-request: that request answers 500 and stores nothing; the others and later ones succeed."""
    # The victim has a connection of its own: uvicorn closes the connection of a
    # request whose error escaped the app, right after the 500, and a pooled
    # keep-alive connection picked up in that moment would fail a later request.
    async with service.client(LOAD_CONCURRENCY) as client, service.client() as victim_client:
        slow = asyncio.create_task(victim_client.post("/slow/victim"))
        pid = await backend_running(service, "slow victim")
        during = await run_load(client, 50, "during")
        (terminated,) = query(service.postgres_url, "select pg_terminate_backend(%s)", pid)
        assert terminated == (True,)
        victim = await asyncio.wait_for(slow, SLEEP_SECONDS)
        after = await run_load(client, 50, "after")
    assert victim.status_code == 500
    assert [response.status_code for response in during + after] == [200] * 100
    assert service.rows_of("victim") == []
    stats = await service.stats()
    assert stats["outcomes"].count("rollback") == 1
    assert stats["outcomes"].count("commit") == 100
    assert stats["checked_out"] == 0
    assert service.idle_in_transaction() == 0
    (backends,) = query(
        service.postgres_url,
        "select count(*) from pg_stat_activity where application_name = %s",
        service.tables.application,
    )
    assert backends[0] <= POOL["pool_size"]


async def test_client_leaving_a_streamed_response_rolls_back_and_returns_the_connection(
    service: Service,
) -> None:
    """A client that disconnects after the first chunk: the request's session rolls back, its connection returns."""
    async with service.client() as client:
        async with client.stream("GET", "/stream/gone") as response:
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                assert chunk.startswith(b"chunk 0")
                break
    deadline = time.monotonic() + SERVER_TIMEOUT
    while (stats := await service.stats())["outcomes"] != ["rollback"] or stats["checked_out"]:
        assert time.monotonic() < deadline, f"the streamed request did not roll back: {stats}"
        await asyncio.sleep(0.05)
    assert stats["errors"] != []
    assert service.rows_of("gone") == []
    assert service.idle_in_transaction() == 0
    async with service.client() as client:
        assert (await client.post("/record/later")).status_code == 200
    assert len(service.rows_of("later")) == 2


async def test_unique_violation_at_commit_answers_500_and_stores_nothing(service: Service) -> None:
    """A deferred unique constraint broken at commit: 500, neither repository's row stored."""
    async with service.client() as client:
        assert (await client.post("/unique/owner", params={"name": "taken"})).status_code == 200
        failed = await client.post("/unique/duplicate", params={"name": "taken"})
        fresh = await client.post("/unique/fresh", params={"name": "fresh"})
    assert failed.status_code == 500
    assert failed.headers["connection"] == "close"
    assert fresh.status_code == 200
    stats = await service.stats()
    assert stats["outcomes"] == ["commit", "failed commit", "commit"]
    assert stats["errors"] == ["23505"]
    assert len(service.rows_of("owner")) == 2
    assert service.rows_of("duplicate") == []
    assert len(service.rows_of("fresh")) == 2
    assert stats["checked_out"] == 0


async def test_lock_then_update_completes_with_one_session_and_times_out_with_two(
    service: Service,
) -> None:
    """FOR UPDATE in one repository, UPDATE in another: done with one session; with two, lock_timeout ends the request."""
    async with service.client() as client:
        one = await client.post("/lock/one-session")
        two = await client.post("/lock/two-sessions")
    assert one.status_code == 200
    assert two.status_code == 500
    counters = service.tables.counters
    assert query(service.postgres_url, f"select value from {counters}") == [(1,)]
    # Both sessions of the failed request rolled back; the waiting one saw the lock timeout.
    stats = await service.stats()
    assert stats["outcomes"] == ["commit", "rollback", "rollback"]
    assert "55P03" in stats["errors"]
    assert stats["checked_out"] == 0
    assert service.idle_in_transaction() == 0
