"""The benchmark script runs end to end with tiny counts; no timing is ever asserted.

One run of ``benchmarks/run.py`` (every case, one round of a few loops, writing its
JSON, chart and README section into a temporary folder) is shared by the tests below.
Peers that are not installed (CI installs only requirements/test.txt) must be
reported as such, never make the run fail.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "run.py"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ is not in this tree")


def run_script(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def section(readme: pathlib.Path) -> str:
    text = readme.read_text()
    return text[text.index(START) : text.index(END)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every case once with tiny counts; return the paths and the printed JSON."""
    folder = tmp_path_factory.mktemp("bench")
    readme = folder / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    results = folder / "results"
    done = run_script(
        "--rounds", "1", "--loops", "5", "--json", "--write-readme",
        "--output-dir", str(results), "--readme", str(readme),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"document": json.loads(done.stdout), "readme": readme, "results": results}


def test_every_case_ran(smoke: dict[str, Any]) -> None:
    """Each case of the script produced figures."""
    document = smoke["document"]
    for case in ("hit", "create", "async_hit", "sync", "async", "thread", "scaling"):
        assert document[case], case


def test_our_cycles_were_checked(smoke: dict[str, Any]) -> None:
    """Our sync and async request cycles passed the correctness check before timing."""
    verified = smoke["document"]["info"]["verified"]
    for mode in ("sync", "async"):
        assert f"{mode} request cycle, dependency-injector-scoped" in verified
        assert f"{mode} request cycle, hand-written" in verified


def test_every_peer_checked_or_reported_missing(smoke: dict[str, Any]) -> None:
    """A peer is either checked like ours or listed with the reason it did not run."""
    info = smoke["document"]["info"]
    for mode in ("sync", "async"):
        unavailable = info["unavailable"][mode]
        for peer in info["peers"]:
            checked = f"{mode} request cycle, {peer}" in info["verified"]
            assert checked != (peer in unavailable), (mode, peer)
            if info["peers"][peer] is None:
                assert unavailable[peer] == "not installed"


def test_scaling_graphs_were_checked(smoke: dict[str, Any]) -> None:
    """The scaling group checked its graphs and measured every size and depth."""
    document = smoke["document"]
    verified = document["info"]["verified"]
    for size in (1, 10, 100, 1000):
        assert f"flat {size}, ours" in verified
        assert f"flat {size}: ours" in document["scaling"]
    assert "10,000 nested scopes" in verified
    assert "10,000 tasks, ours" in verified
    assert {"named depth 1", "named depth 10", "named depth 100"} <= set(document["scaling"])


def test_results_file_and_chart_written(smoke: dict[str, Any]) -> None:
    """The run saved its JSON and, when matplotlib is installed, drew the chart."""
    python = ".".join(smoke["document"]["info"]["python"].split(".")[:2])
    saved = json.loads((smoke["results"] / f"cpython-{python}.json").read_text())
    assert saved["summary"] and saved["runs"]
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (smoke["results"] / "request-cycle.png").exists() == has_matplotlib


def test_readme_section_rewritten(smoke: dict[str, Any]) -> None:
    """The README's section between the markers now holds the generated tables."""
    text = section(smoke["readme"])
    assert "do not edit" in text
    assert "| dependency-injector-scoped |" in text
    assert smoke["document"]["info"]["python"] in text
    outside = smoke["readme"].read_text().replace(text, "")
    assert outside == (ROOT / "README.md").read_text().replace(section(ROOT / "README.md"), "")


def test_results_of_other_interpreters_merged(smoke: dict[str, Any]) -> None:
    """--from-results merges every saved interpreter into the README's tables."""
    saved = next(smoke["results"].glob("cpython-*.json"))
    other = json.loads(saved.read_text())
    other["info"]["python"] = "3.99.0"
    (smoke["results"] / "cpython-3.99.json").write_text(json.dumps(other))
    done = run_script(
        "--from-results", "--write-readme",
        "--output-dir", str(smoke["results"]), "--readme", str(smoke["readme"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| 3.99 sync | 3.99 async |" in section(smoke["readme"])
