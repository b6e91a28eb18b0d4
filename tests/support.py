"""Helpers for test modules (tests/ is on sys.path: ``from support import require_module``)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

# Under CI every optional framework and service is required: nothing skips silently.
REQUIRE_SERVICES = os.environ.get("DIS_REQUIRE_SERVICES") == "1"


def require_module(name: str) -> ModuleType:
    """Import ``name`` for an integration's tests; skip without it, fail under CI."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if REQUIRE_SERVICES:
            pytest.fail(
                f"DIS_REQUIRE_SERVICES=1 but {name} cannot be imported: {error}", pytrace=False
            )
        pytest.skip(f"{name} is not installed: {error}", allow_module_level=True)
