"""Instruction counts of the request cycles on each interpreter, as a README table.

    python benchmarks/callgrind_table.py PYTHON [PYTHON ...] --write-readme
    python benchmarks/callgrind_table.py --from-results --write-readme

For each interpreter, every case of ``callgrind_cases.py`` runs under callgrind
(valgrind) with 0 and with N repetitions; the difference divided by N is the
instructions per operation, start-up and imports cancelled out.  The counts are
saved as ``benchmarks/results/callgrind-<python>.json``; the table is drawn from
every saved file and written between ``<!-- callgrind:start -->`` and
``<!-- callgrind:end -->`` in the README.  Instruction counts repeat for the same
build and inputs whatever else the machine does, which wall-clock times on a
shared machine do not.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import report
from report import TIMES

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- callgrind:start -->", "<!-- callgrind:end -->"
COMMAND = "python benchmarks/callgrind_table.py PYTHON... --write-readme"

#: (label, ours, baseline, target) of each row's columns
COLUMNS: tuple[tuple[str, str, str, float | None], ...] = (
    (f"sync cycle, keywords (≤ 1.3{TIMES})", "cycle", "hand", 1.3),
    (f"sync cycle, positional (≤ 1.3{TIMES})", "pcycle", "phand", 1.3),
    (f"async cycle (≤ 1.5{TIMES})", "acycle", "ahand", 1.5),
    (f"`await` hit / sync hit (≤ 2{TIMES})", "ahit", "shit", 2.0),
    ("dishka sync / ours", "dcycle", "cycle", None),
    ("dishka async / ours", "adcycle", "acycle", None),
)
CASES = sorted({case for _, ours, base, _ in COLUMNS for case in (ours, base)})
#: cases so short that they repeat ten times as often, above the counts' noise
SHORT = {"ahit": 10, "shit": 10}


def count(python: str, case: str, repetitions: int, output: pathlib.Path) -> int:
    """Instructions of one run of ``callgrind_cases.py case repetitions``."""
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={output}",
            python,
            str(HERE / "callgrind_cases.py"),
            case,
            str(repetitions),
        ],
        capture_output=True,
        text=True,
        cwd=HERE,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=1800,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", completed.stderr)
    if completed.returncode != 0 or found is None:
        raise SystemExit(f"{python} {case}: valgrind failed:\n{completed.stderr[-2000:]}")
    return int(found.group(1))


def measure(python: str, loops: int, cases: list[str]) -> dict[str, Any]:
    probe = subprocess.run(
        [
            python,
            "-c",
            "import platform, sys; print(platform.python_implementation().lower(), "
            "platform.python_version(), sys.version.replace(chr(10), ' '), sep='|')",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    implementation, version, build = probe.stdout.strip().split("|")
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            repetitions = loops * SHORT.get(case, 1)
            zero = count(python, case, 0, pathlib.Path(scratch) / f"{case}.0")
            many = count(python, case, repetitions, pathlib.Path(scratch) / f"{case}.n")
            counts[case] = round((many - zero) / repetitions)
            print(f"{version} {case}: {counts[case]:,} instructions per operation", flush=True)
    valgrind = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=False
    )
    return {
        "info": {
            "implementation": implementation,
            "version": version,
            "build": build,
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "valgrind": valgrind.stdout.strip(),
            "loops": loops,
        },
        "instructions": counts,
    }


def save(document: dict[str, Any], directory: pathlib.Path) -> pathlib.Path:
    """Write the counts, keeping those of other cases saved before on the same interpreter build."""
    info = document["info"]
    minor = ".".join(info["version"].split(".")[:2])
    path = directory / f"callgrind-{info['implementation']}-{minor}.json"
    directory.mkdir(parents=True, exist_ok=True)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["info"]["build"] == info["build"]:
            document["instructions"] = saved["instructions"] | document["instructions"]
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def load_all(directory: pathlib.Path) -> list[dict[str, Any]]:
    documents = [json.loads(path.read_text()) for path in directory.glob("callgrind-*.json")]
    return sorted(documents, key=lambda d: tuple(int(p) for p in d["info"]["version"].split(".")))


def cell(counts: dict[str, int], ours: str, base: str, target: float | None) -> str:
    if ours not in counts or base not in counts or not counts[base]:
        return "n/a"
    ratio = counts[ours] / counts[base]
    text = f"{counts[ours]:,} / {counts[base]:,} ({ratio:.2f}{TIMES})"
    return f"**{text}**" if target is not None and ratio > target else text


def section(documents: list[dict[str, Any]]) -> str:
    lines = [
        START,
        f"<!-- generated by `{COMMAND}` from benchmarks/results/callgrind-*.json; do not edit -->",
        "",
        "Instructions per operation counted with callgrind, first figure against the second "
        "(ratio; bold: over its target). The cases are those of `benchmarks/callgrind_cases.py`: "
        "the request cycle with keyword and with positional injections against the same cycle "
        "written by hand, the async cycle (`await container.service()`), an `await` of an "
        "existing async instance against a sync `ScopedFactory` hit, and dishka's cycles set up "
        f"as in the wall-clock benchmark against ours (above 1{TIMES}: dishka runs more instructions).",
        "",
        "| CPython | " + " | ".join(label for label, *_ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for document in documents:
        counts = document["instructions"]
        cells = [cell(counts, ours, base, target) for _, ours, base, target in COLUMNS]
        lines.append(f"| {document['info']['version']} | " + " | ".join(cells) + " |")
    if documents:
        dates = sorted({document["info"]["date"] for document in documents})
        info = documents[-1]["info"]
        lines += [
            "",
            f"Counted on {', '.join(dates)} ({info['machine']}, {info['valgrind']}, "
            f"{info['loops']:,} repetitions per case, ten times as many for the hits).",
        ]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pythons", nargs="*", help="interpreters to count on")
    parser.add_argument("--loops", type=int, default=2000, help="repetitions per case")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--from-results", action="store_true", help="count nothing: redraw")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--output-dir", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--readme", type=pathlib.Path, default=README)
    options = parser.parse_args(argv)
    if not options.from_results:
        if not options.pythons:
            parser.error("name at least one interpreter, or pass --from-results")
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind is not installed (apt-get install valgrind)")
        for python in options.pythons:
            # The cases run from benchmarks/: a relative interpreter path would not be found.
            if os.sep in python:
                python = str(pathlib.Path(python).absolute())
            document = measure(python, options.loops, options.cases.split(","))
            print(f"wrote {save(document, options.output_dir)}")
    text = section(load_all(options.output_dir))
    print(text)
    if options.write_readme:
        report.rewrite_readme(options.readme, text, START, END)
        print(f"rewrote the callgrind section of {options.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
