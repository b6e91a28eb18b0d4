"""Every code block of the README and the docs runs as written, or says it is a fragment.

Fenced blocks are read from ``README.md`` and ``docs/**/*.md``.  The info string
(what follows the opening fence) decides what happens to a block:

- ``python``: runs.  The runnable blocks of one page run in order, in one
  namespace, in a fresh interpreter (``python -W error``) whose working
  directory is a temporary one, so a page reads like a session you can paste
  and SQLite files land in that directory.
- ``python postgres``: runs too, after the page's other blocks before it,
  with ``DATABASE_URL`` set to the test server (the ``postgres_url`` fixture:
  skipped without a server, required under CI).
- ``python fragment``: shown, never run (a piece of a larger program).
- any language of :data:`NOT_PYTHON` (shell, output, configuration): never run.

Any other info string fails the test, so no block escapes by a typo.  Pages
whose blocks import an optional framework skip without it (``require_module``;
under CI the frameworks are required).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from support import require_module

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES = [page for page in PAGES if "_build" not in page.parts]

#: Info strings of blocks that are not Python and never run.
NOT_PYTHON = frozenset({"bash", "console", "text", "toml", "ini", "json", "output", ""})
#: Modules whose import makes a page need an optional framework.
FRAMEWORKS = ("fastapi", "starlette", "flask", "aiohttp", "litestar", "celery", "click", "httpx")
#: Seconds a page may take.
TIMEOUT = 60

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")

# Run in the child: execute each block in __main__'s namespace, so that
# ``container.wire(modules=[__name__])`` and pickling see a real module, with
# the block's own file and line numbers in tracebacks.
_RUNNER = """
import json, sys
for _path, _line, _source in json.loads(sys.stdin.read()):
    exec(compile("\\n" * (_line - 1) + _source, _path, "exec"), globals())
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    path: pathlib.Path
    line: int  # of the block's first line of code, 1-based
    info: str
    source: str

    @property
    def kind(self) -> str:
        """``run``, ``postgres``, ``fragment`` or ``other``."""
        words = self.info.split()
        if self.info.startswith("{"):
            return "directive"
        if words[:1] == ["python"]:
            flags = words[1:]
            if flags == []:
                return "run"
            if flags == ["postgres"]:
                return "postgres"
            if flags == ["fragment"]:
                return "fragment"
            return "unknown"
        return "other" if self.info in NOT_PYTHON else "unknown"


def blocks_of(path: pathlib.Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order (nested fences included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = index + 1
        end = start
        while end < len(lines) and not (
            lines[end].strip().startswith(fence[0] * len(fence))
            and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        block = Block(path, start + 1, info, "\n".join(lines[start:end]) + "\n")
        if block.kind == "directive":
            # A MyST directive ({toctree}, {eval-rst}, ...) may hold code blocks.
            index = start
            continue
        found.append(block)
        index = end + 1
    return found


def _page_id(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_block_is_runnable_or_marked(page: pathlib.Path) -> None:
    """Each fenced block is Python that runs, a marked Python fragment, or not Python."""
    unknown = [
        f"{_page_id(block.path)}:{block.line - 1}: ```{block.info}"
        for block in blocks_of(page)
        if block.kind == "unknown"
    ]
    assert not unknown, (
        "blocks with an info string this test does not know (use ```python, "
        f"```python fragment, ```python postgres or one of {sorted(NOT_PYTHON)}): {unknown}"
    )


RUNNABLE = [page for page in PAGES if any(b.kind in ("run", "postgres") for b in blocks_of(page))]


@pytest.mark.parametrize("page", RUNNABLE, ids=_page_id)
def test_page_examples_run(
    page: pathlib.Path, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    """The page's runnable blocks run, in order, in a fresh interpreter and a temp directory."""
    blocks = [block for block in blocks_of(page) if block.kind in ("run", "postgres")]
    source = "".join(block.source for block in blocks)
    for framework in FRAMEWORKS:
        if re.search(rf"^\s*(from|import) {framework}\b", source, re.MULTILINE):
            require_module(framework)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DATABASE_URL", None)
    if any(block.kind == "postgres" for block in blocks):
        url: str = request.getfixturevalue("postgres_url")
        env["DATABASE_URL"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
    payload = json.dumps([[str(block.path), block.line, block.source] for block in blocks])
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", _RUNNER],
        input=payload,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{_page_id(page)}'s examples failed:\n{completed.stdout}\n{completed.stderr}"
    )
    # An error in a destructor or a callback is only printed: it fails the page too.
    assert "Exception ignored" not in completed.stderr, completed.stderr
