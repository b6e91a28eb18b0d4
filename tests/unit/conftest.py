"""Every unit test starts and ends with no scope open in the test's context."""

from __future__ import annotations

import pytest

from dependency_injector_scoped import _scope, get_current_scope


@pytest.fixture(autouse=True)
def no_leaked_scope():
    """Isolate tests from a scope another test left open, and flag the test that leaves one."""
    token = _scope._current.set(None)
    yield
    leaked = get_current_scope()
    _scope._current.reset(token)
    if leaked is not None:
        pytest.fail(f"the test left {leaked!r} open in its context")
