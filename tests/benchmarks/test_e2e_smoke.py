"""The end-to-end benchmark runs over real uvicorn servers with tiny counts; no timing is asserted.

One run of ``benchmarks/e2e.py`` (every system, one round, the Python load generator,
a few requests per route, writing its JSON and README section into a temporary
folder) is shared by the tests below.  A system whose library is not installed
(dishka is in requirements/bench.txt only) must be reported as such, never make the
run fail.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from support import require_module

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
SCRIPT = BENCHMARKS / "e2e.py"
START, END = "<!-- e2e:start -->", "<!-- e2e:end -->"
REQUESTS = 40

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ is not in this tree")

for _module in ("fastapi", "uvicorn", "sqlalchemy", "aiosqlite"):
    require_module(_module)


def run(*arguments: str, script: pathlib.Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def section(readme: pathlib.Path) -> str:
    text = readme.read_text()
    return text[text.index(START) : text.index(END)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every system once, a few requests per route; return the paths and the JSON."""
    folder = tmp_path_factory.mktemp("e2e")
    readme = folder / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    results = folder / "results"
    done = run(
        "--load", "python", "--rounds", "1", "--requests", str(REQUESTS), "--concurrency", "4",
        "--json", "--write-readme", "--output-dir", str(results), "--readme", str(readme),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"document": json.loads(done.stdout), "readme": readme, "results": results}


@pytest.fixture(scope="module")
def e2e() -> Iterator[ModuleType]:
    """``benchmarks/e2e.py`` imported as a module (it imports its neighbours by name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("e2e_under_test", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_every_system_checked_or_reported_missing(smoke: dict[str, Any]) -> None:
    """A system passed the HTTP checks, or is listed as not installed because it is not."""
    document = smoke["document"]
    unavailable = document["setup"]["unavailable"]
    for system in ("scoped", "inject", "fastapi", "dishka", "middleware"):
        assert (system in document["verified"]) != (system in unavailable), system
    dishka_missing = importlib.util.find_spec("dishka") is None
    assert ("dishka" in unavailable) == dishka_missing
    if dishka_missing:
        assert unavailable["dishka"] == "not installed"


def test_every_request_opened_and_closed_one_session(smoke: dict[str, Any]) -> None:
    """Each checked system answered every request with 200 and one session per request."""
    document = smoke["document"]
    for system in document["verified"]:
        for kind in ("async", "sync"):
            [result] = document["samples"][system][kind]
            assert result["requests"] == REQUESTS, (system, kind)
            assert result["non_200"] == 0, (system, kind)
            assert result["sessions"] == REQUESTS, (system, kind)
            assert result["requests_per_second"] > 0, (system, kind)


def test_ratios_computed_for_our_systems(smoke: dict[str, Any]) -> None:
    """Both of our systems have a ratio against every baseline that ran, per route."""
    document = smoke["document"]
    ratios = {(e["ours"], e["baseline"], e["kind"]): e for e in document["table"]["ratios"]}
    for ours in ("scoped", "inject"):
        for baseline in ("fastapi", "dishka", "middleware"):
            for kind in ("async", "sync"):
                entry = ratios[(ours, baseline, kind)]
                assert ("ratio" in entry) == (baseline in document["verified"])


def test_results_file_names_its_setup(smoke: dict[str, Any]) -> None:
    """The JSON file records the versions, the server and the load generator's settings."""
    python = ".".join(smoke["document"]["setup"]["python"].split(".")[:2])
    saved = json.loads((smoke["results"] / f"e2e-cpython-{python}.json").read_text())
    setup = saved["setup"]
    for name in ("fastapi", "starlette", "uvicorn", "sqlalchemy", "dependency-injector-scoped"):
        assert setup["versions"][name], name
    assert setup["load"]["requests"] == REQUESTS
    assert setup["server"]["http"] in ("h11", "httptools")
    assert setup["pinning"]


def test_readme_section_rewritten(smoke: dict[str, Any]) -> None:
    """The README's end-to-end section holds the generated tables and nothing else changed."""
    text = section(smoke["readme"])
    assert "do not edit" in text
    assert "| dependency-injector-scoped, `Depends(Scoped(...))` |" in text
    assert "| `Scoped` / hand-written |" in text
    outside = smoke["readme"].read_text().replace(text, "")
    assert outside == (ROOT / "README.md").read_text().replace(section(ROOT / "README.md"), "")


def test_run_from_results_rewrites_the_section(
    smoke: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    """``run.py --from-results --write-readme`` also rebuilds the end-to-end section."""
    saved = sorted((ROOT / "benchmarks" / "results").glob("cpython-*.json"))
    if not saved:
        pytest.skip("no saved benchmark results in this tree")
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(saved[0], results / saved[0].name)
    for path in smoke["results"].glob("e2e-*.json"):
        shutil.copy(path, results / path.name)
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    readme.write_text(readme.read_text().replace(section(readme), START + "\n"))
    done = run(
        "--from-results", "--write-readme", "--output-dir", str(results), "--readme", str(readme),
        script=BENCHMARKS / "run.py",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert section(readme) == section(smoke["readme"])


class FakeServer:
    """Answers the checks' requests from a script instead of over HTTP."""

    system = "fake"
    port = 0

    def __init__(self, opened: int, closed: int) -> None:
        self.counters = {"system": "fake", "opened": opened, "closed": closed}

    def stats(self) -> dict[str, Any]:
        return self.counters


@pytest.mark.parametrize(
    ("answers", "closed", "message"),
    [
        ([(1, False), (2, True), (3, True), (4, True)], 4, "different sessions"),
        ([(1, True), (1, True), (3, True), (4, True)], 4, "shared a session"),
        ([(1, True), (2, True), (3, True), (4, True)], 3, "closed"),
    ],
    ids=["repositories-disagree", "session-reused", "session-left-open"],
)
def test_check_rejects_a_broken_system(
    e2e: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    answers: list[tuple[int, bool]],
    closed: int,
    message: str,
) -> None:
    """The check before timing fails a system that shares, reuses or leaks sessions."""
    kinds = ("async", "sync")
    bodies = iter(
        {"kind": kinds[index // 2], "session": serial, "same": same}
        for index, (serial, same) in enumerate(answers)
    )
    monkeypatch.setattr(e2e, "get_json", lambda port, path: (200, next(bodies)))
    monkeypatch.setattr(e2e, "CLOSE_TIMEOUT", 0.1)
    server = FakeServer(opened=4, closed=closed)
    with pytest.raises(e2e.BenchmarkError, match=message):
        e2e.check(server, kinds)


def test_check_accepts_a_correct_system(e2e: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check passes one shared, fresh, closed session per request."""
    kinds = ("async", "sync")
    bodies = iter({"kind": kinds[n // 2], "session": n + 1, "same": True} for n in range(4))
    monkeypatch.setattr(e2e, "get_json", lambda port, path: (200, next(bodies)))
    e2e.check(FakeServer(opened=4, closed=4), kinds)


WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40000/async
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.71ms    1.03ms  29.91ms   93.14%
    Req/Sec     3.00k   123.45     3.20k    80.00%
  Latency Distribution
     50%   10.52ms
     75%   10.91ms
     90%   11.46ms
     99%   14.95ms
  29871 requests in 10.01s, 4.73MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2984.20
Transfer/sec:    483.88KB
"""


def test_wrk_output_parsed(e2e: ModuleType) -> None:
    """wrk's rate, counts, errors and latency percentiles are read from its output."""
    result = e2e.parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 29871
    assert result["seconds"] == pytest.approx(10.01)
    assert result["requests_per_second"] == pytest.approx(2984.20)
    assert result["non_200"] == 3
    assert result["socket_errors"] == 3
    assert result["latency_p50_ms"] == pytest.approx(10.52)
    assert result["latency_p99_ms"] == pytest.approx(14.95)
