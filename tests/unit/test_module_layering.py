"""The compiled core depends one way: ``providers`` on ``_scope``, never back."""

from __future__ import annotations

import re
from pathlib import Path

import dependency_injector_scoped

# The .pxd files ship with the package; the .pyx sources are read from the
# source tree when the suite runs from one (not against an installed wheel).
INSTALLED = Path(dependency_injector_scoped.__file__).resolve().parent
SOURCES = Path(__file__).resolve().parents[2] / "src" / "dependency_injector_scoped"
SCOPE_FILES = [INSTALLED / "_scope.pxd", *sorted(SOURCES.glob("_scope.pyx"))]
IMPORT = re.compile(r"^\s*(?:from\s+(\S+)\s+c?import\s+(.+)|c?import\s+(.+))$")


def imported_modules(path: Path) -> set[str]:
    """Every module an (c)import statement of ``path`` names, with the names it takes."""
    found: set[str] = set()
    for line in path.read_text().splitlines():
        match = IMPORT.match(line.split("#", 1)[0])
        if match is None:
            continue
        source, names, plain = match.groups()
        if plain is not None:
            found.update(name.split(" as ")[0].strip() for name in plain.split(","))
        else:
            found.add(source)
            found.update(
                f"{source}.{name.split(' as ')[0].strip(' ()')}" for name in names.split(",")
            )
    return found


def test_scope_module_imports_nothing_of_providers_or_containers() -> None:
    for path in SCOPE_FILES:
        modules = imported_modules(path)
        assert modules, f"no import statement read from {path}"
        back = sorted(m for m in modules if re.search(r"(^|\.)(providers|containers)(\.|$)", m))
        assert back == [], f"{path.name} imports {back}: _scope must not depend on the providers"


def test_providers_cimports_the_scope_module() -> None:
    assert "._scope" in imported_modules(INSTALLED / "providers.pxd")
