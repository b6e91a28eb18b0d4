"""End to end: FastAPI apps over a real uvicorn server on 127.0.0.1, driven by a load generator.

Every system of ``e2e_apps.py`` (this package's ``Scoped`` and ``@inject`` +
``Provide``, FastAPI's ``Depends``, dishka, a hand-written session middleware) serves
the same two routes, an ``async def`` one on an ``AsyncSession`` and a ``def`` one on a
``Session``, each resolving two repositories that share the request's one session::

    python benchmarks/e2e.py [--rounds 3] [--duration 10] [--warmup 2] [--connections 32]
                             [--load auto|wrk|python] [--requests N] [--concurrency N]
                             [--systems scoped,inject,...] [--kinds async,sync] [--query]
                             [--json] [--save | --write-readme] [--output-dir DIR]
    python benchmarks/e2e.py --from-results   # rebuild the README's section from saved files
    python benchmarks/e2e.py load HOST PORT PATH CONCURRENCY REQUESTS  # the Python generator

Per round, every system once, the order rotated from round to round (and the two
routes' order alternated): its server is started as a subprocess (``uvicorn
--factory e2e_apps:create_app``, one worker, no access log, uvicorn's default event
loop and HTTP parser: uvloop and httptools when installed, asyncio and h11
otherwise), checked over HTTP, warmed up, driven for each route, checked again and
stopped.  With ``taskset`` and two cores, the server runs on one core and the load
generator on another.

The load generator is ``wrk`` (fixed threads, connections and duration) when it is on
the PATH, otherwise (or with ``--load python``) the asyncio generator in this file:
keep-alive HTTP/1.1 connections, a fixed concurrency and a fixed number of requests.

Checks, before timing (a system that fails stops the run): both repositories got the
same session, two requests got two sessions, and every session opened was closed once
the requests had answered.  After each timed run: no response other than 200, and
every session opened during it was closed.

``--save`` writes ``benchmarks/results/e2e-<implementation>-<major.minor>[-query].json``;
``--write-readme`` also rebuilds the README's section between ``<!-- e2e:start -->``
and ``<!-- e2e:end -->`` from every such file (``run.py --from-results
--write-readme`` rebuilds it too; see ``report.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.client
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import report

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
SYSTEMS = ("scoped", "inject", "fastapi", "dishka", "middleware")
OURS = ("scoped", "inject")
KINDS = ("async", "sync")
#: what each system needs besides FastAPI and this package
REQUIRES = {"dishka": "dishka"}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CLOSE_TIMEOUT = 10.0
VERSIONS = ("fastapi", "starlette", "uvicorn", "dishka", "sqlalchemy", "aiosqlite", "anyio")


class BenchmarkError(Exception):
    """A system did not do the work it is timed for, or a server misbehaved."""


# --- the Python load generator ------------------------------------------------------


def _content_length(head: bytes) -> int:
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if match is None:
        raise BenchmarkError(f"response without content-length: {head[:200]!r}")
    return int(match.group(1))


async def generate_load(
    host: str, port: int, path: str, concurrency: int, requests: int, timeout: float = 300.0
) -> dict[str, Any]:
    """Send ``requests`` GETs over ``concurrency`` keep-alive connections; count and time them."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    remaining = requests
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def connection() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(_content_length(head))
                latencies.append(time.perf_counter() - started)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                if re.search(rb"(?im)^connection:\s*close", head):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(connection() for _ in range(min(concurrency, requests)))), timeout
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    done = len(latencies)
    return {
        "requests": done,
        "seconds": elapsed,
        "requests_per_second": done / elapsed,
        "non_200": done - statuses.get(200, 0),
        "socket_errors": 0,
        "latency_p50_ms": latencies[done // 2] * 1e3 if done else None,
        "latency_p99_ms": latencies[min(done - 1, done * 99 // 100)] * 1e3 if done else None,
    }


# --- wrk --------------------------------------------------------------------------


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _milliseconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise BenchmarkError(f"wrk printed an unknown duration {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of ``wrk --latency`` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if done is None or rate is None:
        raise BenchmarkError(f"cannot read wrk's output:\n{output}")
    non_200 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    return {
        "requests": int(done.group(1)),
        "seconds": _milliseconds(done.group(2) + done.group(3)) / 1e3,
        "requests_per_second": float(rate.group(1)),
        "non_200": int(non_200.group(1)) if non_200 else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
        "latency_p50_ms": _milliseconds(p50.group(1)) if p50 else None,
        "latency_p99_ms": _milliseconds(p99.group(1)) if p99 else None,
    }


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout + done.stderr).splitlines()[0]
    return first.split(" Copyright")[0].strip()


# --- CPUs ---------------------------------------------------------------------------


def cpu_plan() -> dict[str, Any]:
    """Which core the server and which the load generator run on (``taskset``), if any."""
    taskset = shutil.which("taskset")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if taskset is None or len(cores) < 2:
        why = "taskset not found" if taskset is None else f"{len(cores)} core(s) available"
        return {"pinned": False, "why": why, "server": None, "load": None}
    return {"pinned": True, "server": cores[-1], "load": cores[0], "taskset": taskset}


def pinned(plan: dict[str, Any], role: str, command: list[str]) -> list[str]:
    if not plan["pinned"]:
        return command
    return [plan["taskset"], "-c", str(plan[role]), *command]


# --- servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        return int(listener.getsockname()[1])


def get_json(port: int, path: str, timeout: float = 10.0) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else None
    finally:
        connection.close()


class Server:
    """One system's uvicorn server, a subprocess on a free port of 127.0.0.1."""

    def __init__(self, system: str, port: int, process: subprocess.Popen[bytes], log: Any):
        self.system = system
        self.port = port
        self.process = process
        self.log = log

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stats(self) -> dict[str, Any]:
        status, body = get_json(self.port, "/_stats")
        if status != 200 or body.get("system") != self.system:
            raise BenchmarkError(f"{self.system}: /_stats answered {status} {body!r}")
        return dict(body)


@contextlib.contextmanager
def serve(system: str, options: argparse.Namespace, plan: dict[str, Any]) -> Iterator[Server]:
    """Start ``system``'s server, wait until it answers, and stop it afterwards, whatever happens."""
    port = free_port()
    env = dict(
        os.environ,
        E2E_SYSTEM=system,
        E2E_DATABASE=str(options.database),
        E2E_QUERY="1" if options.query else "0",
    )
    command = pinned(
        plan,
        "server",
        [
            sys.executable, "-m", "uvicorn", "--app-dir", str(HERE),
            "--factory", "e2e_apps:create_app",
            "--host", HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning",
        ],
    )  # fmt: skip
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(system, port, process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise BenchmarkError(f"{system}: the server exited:\n{server.output()}")
            try:
                server.stats()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{system}: the server did not start in time") from None
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        log.close()


def wait_closed(server: Server, at_least: int) -> dict[str, Any]:
    """The server's counters once every session it opened is closed (and ``at_least`` opened)."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    while True:
        stats = server.stats()
        if stats["closed"] == stats["opened"] >= at_least:
            return stats
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"{server.system}: {stats['opened']} sessions opened, {stats['closed']} closed "
                f"(expected at least {at_least}, all closed) {CLOSE_TIMEOUT:.0f} s after the "
                "requests answered"
            )
        time.sleep(0.02)


def check(server: Server, kinds: tuple[str, ...]) -> None:
    """Over HTTP: one session shared by both repositories, one per request, all closed."""
    serials = []
    for kind in kinds:
        for _ in range(2):
            status, body = get_json(server.port, f"/{kind}")
            name = f"{server.system} /{kind}"
            if status != 200 or not isinstance(body, dict) or body.get("kind") != kind:
                raise BenchmarkError(f"{name}: answered {status} {body!r}")
            if body["same"] is not True:
                raise BenchmarkError(f"{name}: the two repositories got different sessions")
            serials.append(body["session"])
    if len(set(serials)) != len(serials):
        raise BenchmarkError(f"{server.system}: two requests shared a session ({serials})")
    wait_closed(server, max(serials))


# --- one measurement ----------------------------------------------------------------


def drive(
    server: Server, kind: str, options: argparse.Namespace, plan: dict[str, Any], *, warmup: bool
) -> dict[str, Any]:
    """Load ``/kind`` once; with ``warmup`` briefly.  Raises on any non-200 answer."""
    url = f"http://{HOST}:{server.port}/{kind}"
    if options.load == "wrk":
        seconds = options.warmup if warmup else options.duration
        command = [
            options.wrk, "-t", str(options.threads), "-c", str(options.connections),
            "-d", f"{seconds}s", "--latency", url,
        ]  # fmt: skip
        timeout = seconds + 60
    else:
        requests = max(options.requests // 10, options.concurrency) if warmup else options.requests
        command = [
            sys.executable, __file__, "load", HOST, str(server.port), f"/{kind}",
            str(options.concurrency), str(requests),
        ]  # fmt: skip
        timeout = 600
    before = server.stats()
    done = subprocess.run(
        pinned(plan, "load", command), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise BenchmarkError(
            f"{server.system} /{kind}: the load generator failed:\n{done.stderr}\n"
            f"server:\n{server.output()}"
        )
    result = parse_wrk(done.stdout) if options.load == "wrk" else json.loads(done.stdout)
    if result["non_200"]:
        raise BenchmarkError(
            f"{server.system} /{kind}: {result['non_200']} responses were not 200\n"
            f"server:\n{server.output()}"
        )
    after = wait_closed(server, before["opened"] + result["requests"])
    result["sessions"] = after["opened"] - before["opened"]
    return result


# --- the rounds ---------------------------------------------------------------------


def available_systems(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    runnable, unavailable = [], {}
    for system in wanted:
        module = REQUIRES.get(system)
        if module is not None and importlib.util.find_spec(module) is None:
            unavailable[system] = "not installed"
        else:
            runnable.append(system)
    return runnable, unavailable


def run_rounds(options: argparse.Namespace) -> dict[str, Any]:
    systems, unavailable = available_systems(options.systems)
    kinds = tuple(options.kinds)
    plan = cpu_plan()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        system: {kind: [] for kind in kinds} for system in systems
    }
    verified: list[str] = []
    orders = []
    for number in range(options.rounds):
        shift = number % len(systems) if systems else 0
        order = systems[shift:] + systems[:shift]
        kind_order = kinds if number % 2 == 0 else kinds[::-1]
        orders.append({"systems": order, "kinds": list(kind_order)})
        for system in order:
            print(f"round {number + 1}/{options.rounds}: {system} ...", file=sys.stderr, flush=True)
            with serve(system, options, plan) as server:
                check(server, kinds)
                if system not in verified:
                    verified.append(system)
                for kind in kind_order:
                    drive(server, kind, options, plan, warmup=True)
                    result = drive(server, kind, options, plan, warmup=False)
                    print(
                        f"  /{kind}: {result['requests_per_second']:.0f} requests/s",
                        file=sys.stderr,
                        flush=True,
                    )
                    samples[system][kind].append(result)
    return {
        "setup": setup(options, plan, systems, unavailable),
        "verified": verified,
        "orders": orders,
        "samples": samples,
        "table": summarise(samples, kinds),
    }


def summarise(
    samples: dict[str, dict[str, list[dict[str, Any]]]], kinds: tuple[str, ...]
) -> dict[str, Any]:
    """Median requests/s per system and route, their spread, and our ratios per round."""
    rates: dict[str, dict[str, Any]] = {}
    for system, by_kind in samples.items():
        rates[system] = {}
        for kind, results in by_kind.items():
            values = [result["requests_per_second"] for result in results]
            if not values:
                continue
            median = statistics.median(values)
            rates[system][kind] = {
                "median": median,
                "min": min(values),
                "max": max(values),
                "spread": (max(values) - min(values)) / median if median else None,
                "rounds": values,
                "latency_p50_ms": statistics.median(
                    result["latency_p50_ms"] for result in results if result["latency_p50_ms"]
                )
                if any(result["latency_p50_ms"] for result in results)
                else None,
            }
    ratios = []
    for ours in OURS:
        for baseline, target in report.E2E_TARGETS.items():
            for kind in kinds:
                ours_rates = rates.get(ours, {}).get(kind)
                baseline_rates = rates.get(baseline, {}).get(kind)
                entry: dict[str, Any] = {
                    "ours": ours,
                    "baseline": baseline,
                    "kind": kind,
                    "target": target,
                }
                if ours_rates and baseline_rates:
                    per_round = [
                        mine / theirs
                        for mine, theirs in zip(
                            ours_rates["rounds"], baseline_rates["rounds"], strict=True
                        )
                    ]
                    entry["rounds"] = per_round
                    entry["ratio"] = statistics.median(per_round)
                    entry["met"] = entry["ratio"] >= target
                ratios.append(entry)
    return {"rates": rates, "ratios": ratios}


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def setup(
    options: argparse.Namespace,
    plan: dict[str, Any],
    systems: list[str],
    unavailable: dict[str, str],
) -> dict[str, Any]:
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if options.load == "wrk":
        load = {
            "generator": wrk_version(options.wrk),
            "threads": options.threads,
            "connections": options.connections,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
        }
    else:
        load = {
            "generator": "benchmarks/e2e.py load (asyncio, keep-alive HTTP/1.1)",
            "concurrency": options.concurrency,
            "requests": options.requests,
            "warmup_requests": max(options.requests // 10, options.concurrency),
        }
    load["cpu"] = plan["load"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "interpreter": f"{platform.python_implementation()} {platform.python_version()} "
        f"({', '.join(platform.python_build())}; {platform.python_compiler()})",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "versions": {
            "dependency-injector-scoped": version("dependency-injector-scoped"),
            "dependency-injector": version("dependency-injector"),
            **{name: version(name) for name in VERSIONS},
        },
        "server": {
            "command": "uvicorn --factory e2e_apps:create_app --host 127.0.0.1 "
            "--no-access-log (one worker)",
            "loop": loop,
            "http": parser,
            "cpu": plan["server"],
        },
        "load": load,
        "pinning": "taskset: server on CPU {server}, load generator on CPU {load}".format(**plan)
        if plan["pinned"]
        else f"not pinned ({plan['why']})",
        "rounds": options.rounds,
        "query": options.query,
        "database": "SQLite file (aiosqlite for AsyncSession, pysqlite for Session)",
        "systems": systems,
        "unavailable": unavailable,
    }


# --- the command line ---------------------------------------------------------------


def parse_list(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = sorted(set(items) - set(choices))
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}, got {text!r}")
        return [item for item in choices if item in items]

    return parse


def print_table(document: dict[str, Any]) -> None:
    print("\n".join(report.e2e_tables(document)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        host, port, path, concurrency, requests = argv[1:6]
        result = asyncio.run(generate_load(host, int(port), path, int(concurrency), int(requests)))
        print(json.dumps(result))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="wrk: seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="wrk: seconds of warm-up per run")
    parser.add_argument("--threads", type=int, default=1, help="wrk: threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk: connections")
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="the load generator: wrk if found (auto), or the Python one",
    )
    parser.add_argument("--requests", type=int, default=20000, help="python: requests per run")
    parser.add_argument("--concurrency", type=int, default=32, help="python: connections")
    parser.add_argument("--systems", type=parse_list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--kinds", type=parse_list(KINDS), default=list(KINDS))
    parser.add_argument(
        "--query", action="store_true", help="each request also runs SELECT 1 on its session"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--save", action="store_true", help="write the results' JSON file")
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="--save, then rewrite the README's section between the e2e markers",
    )
    parser.add_argument("--output-dir", default=str(HERE / "results"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: rebuild the README's section from the saved e2e-*.json files",
    )
    options = parser.parse_args(argv)
    if options.from_results:
        directory, readme = pathlib.Path(options.output_dir), pathlib.Path(options.readme)
        section = report.e2e_section(report.load_e2e(directory))
        report.rewrite_readme(readme, section, *report.E2E_MARKERS)
        print(f"rewrote {readme}", file=sys.stderr)
        return 0

    wrk = shutil.which("wrk")
    if options.load == "auto":
        options.load = "wrk" if wrk else "python"
    if options.load == "wrk" and wrk is None:
        parser.error("--load wrk: wrk is not on the PATH")
    options.wrk = wrk
    try:
        with tempfile.TemporaryDirectory(prefix="e2e-") as folder:
            options.database = pathlib.Path(folder) / "e2e.db"
            document = run_rounds(options)
    except BenchmarkError as error:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1
    if options.save or options.write_readme:
        directory = pathlib.Path(options.output_dir)
        print(f"wrote {report.save_e2e(document, directory)}", file=sys.stderr)
        if options.write_readme:
            readme = pathlib.Path(options.readme)
            report.rewrite_readme(
                readme, report.e2e_section(report.load_e2e(directory)), *report.E2E_MARKERS
            )
            print(f"rewrote {readme}", file=sys.stderr)
    if options.json:
        print(json.dumps(document, indent=2))
    else:
        print_table(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
