"""The callgrind table script: its cases exist, it redraws the README from saved counts, and
(where valgrind is installed) it counts a case end to end.  No count is ever asserted."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "callgrind_table.py"
CASES = ROOT / "benchmarks" / "callgrind_cases.py"
X = "\u00d7"  # the multiplication sign of the ratios

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ is not in this tree")


@pytest.fixture(scope="module")
def table() -> Iterator[ModuleType]:
    # The script imports its neighbours (report), as when run from benchmarks/.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("callgrind_table", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def run(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


#: the cases that run a peer, installed with requirements/bench.txt only
PEER_CASES = {"dcycle": "dishka", "adcycle": "dishka"}


def test_every_case_of_the_table_runs(table: ModuleType) -> None:
    """Each case the table needs runs in callgrind_cases.py (a few repetitions, no valgrind).

    A case of a peer that is not installed is left out, as the benchmarks report it.
    """
    assert set(PEER_CASES) <= set(table.CASES)
    for case in table.CASES:
        if case in PEER_CASES and importlib.util.find_spec(PEER_CASES[case]) is None:
            continue
        done = subprocess.run(
            [sys.executable, str(CASES), case, "3"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=CASES.parent,
            check=False,
        )
        assert done.returncode == 0, (case, done.stderr)


def test_the_readme_section_is_redrawn_from_saved_counts(
    table: ModuleType, tmp_path: pathlib.Path
) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    results = tmp_path / "results"
    for version, acycle in (("3.12.1", 45_000), ("3.10.13", 39_000)):
        counts = {case: 1_000 for case in table.CASES} | {"acycle": acycle, "ahand": 30_000}
        table.save(
            {
                "info": {
                    "implementation": "cpython",
                    "version": version,
                    "build": version,
                    "date": "2026-12-04",
                    "machine": "x86_64, 2 cores",
                    "valgrind": "valgrind-3.19.0",
                    "loops": 5,
                },
                "instructions": counts,
            },
            results,
        )
    done = run(
        "--from-results", "--write-readme", "--output-dir", str(results), "--readme", str(readme)
    )
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    section = text[text.index(table.START) : text.index(table.END)]
    assert "do not edit" in section
    # Sorted by version, each ratio computed, the one over its target in bold.
    assert section.index("| 3.10.13 |") < section.index("| 3.12.1 |")
    assert f"| 45,000 / 30,000 (1.50{X}) |" in section  # 1.50 is within its target: not bold
    assert f"39,000 / 30,000 (1.30{X})" in section
    outside = text.replace(section, "")
    original = (ROOT / "README.md").read_text()
    original_section = original[original.index(table.START) : original.index(table.END)]
    assert outside == original.replace(original_section, "")


def test_a_ratio_over_its_target_is_marked(table: ModuleType) -> None:
    assert table.cell({"a": 16, "b": 10}, "a", "b", 1.5) == f"**16 / 10 (1.60{X})**"
    assert table.cell({"a": 15, "b": 10}, "a", "b", 1.5) == f"15 / 10 (1.50{X})"
    assert table.cell({"a": 15}, "a", "b", 1.5) == "n/a"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_case_is_counted_end_to_end(tmp_path: pathlib.Path) -> None:
    done = run(
        sys.executable, "--loops", "5", "--cases", "shit", "--output-dir", str(tmp_path),
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads(next(tmp_path.glob("callgrind-*.json")).read_text())
    # With so few repetitions the count is mostly noise (it may even come out negative).
    assert isinstance(saved["instructions"]["shit"], int)
    assert saved["info"]["loops"] == 5
