"""Check the GitHub workflows' supply-chain rules.

Usage: ``python scripts/check_workflows.py WORKFLOW.yml...``

- every action is pinned to a full 40-character commit SHA, followed by a
  ``# vX.Y.Z`` comment naming its release;
- the workflow grants no permission by default (``permissions: {}``) and
  every job declares its own;
- ``id-token: write`` is granted only to a job running in an environment;
- every checkout sets ``persist-credentials: false``.

Schema validity is checked separately (``check-jsonschema``).
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any

from ruamel.yaml import YAML

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<value>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s+# v\d+\.\d+\.\d+\s*$")


def check(path: pathlib.Path) -> list[str]:
    """Return the rule violations in the workflow at ``path``."""
    problems = []
    text = path.read_text()
    for number, line in enumerate(text.splitlines(), start=1):
        match = USES_LINE.match(line)
        if match is None:
            continue
        value = match["value"]
        if value.startswith("./"):
            continue
        if not PINNED.match(value):
            problems.append(f"{path}:{number}: {value} is not pinned to a full commit SHA")
        if not VERSION_COMMENT.match(match["rest"]):
            problems.append(f"{path}:{number}: {value} lacks a '# vX.Y.Z' comment")

    workflow: dict[str, Any] = YAML(typ="safe").load(text)
    if workflow.get("permissions") != {}:
        problems.append(f"{path}: top-level 'permissions: {{}}' is missing")
    for name, job in workflow.get("jobs", {}).items():
        permissions = job.get("permissions")
        if permissions is None:
            problems.append(f"{path}: job {name!r} does not declare its permissions")
        elif isinstance(permissions, dict) and permissions.get("id-token") == "write":
            if "environment" not in job:
                problems.append(f"{path}: job {name!r} gets id-token: write outside an environment")
        for step in job.get("steps", []):
            uses = step.get("uses", "")
            if uses.startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    problems.append(
                        f"{path}: a checkout in job {name!r} lacks persist-credentials: false"
                    )
    return problems


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    problems = [problem for path in paths for problem in check(pathlib.Path(path))]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(paths)} workflow(s): actions pinned, permissions minimal, credentials dropped")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
