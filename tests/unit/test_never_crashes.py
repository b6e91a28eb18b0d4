"""Never crashes: deep chains, providers whose __init__ never ran, copying a Scope.

What could crash the interpreter runs in a subprocess, so a segfault fails one test
instead of the whole run.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap

import pytest

from dependency_injector_scoped import containers, providers


def run_isolated(code: str, tmp_path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment; fail the test if it crashed."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (
        f"the interpreter died with return code {result.returncode}:\n{result.stderr[-3000:]}"
    )
    return result


CHAIN = """
    import sys
    from dependency_injector import providers as upstream
    from dependency_injector_scoped import containers, providers

    kind = {kind!r}
    cls = upstream.Factory if kind == "upstream" else providers.ScopedFactory
    link = cls(object)
    for _ in range({depth}):
        link = cls(lambda previous: previous, link)
    c = containers.DynamicContainer()
    c.last = link
    try:
        with c.scope():
            link()
    except RecursionError:
        print("RecursionError", flush=True)
    else:
        print("resolved", flush=True)
"""


def chain_outcome(kind: str, depth: int, tmp_path) -> str:
    """How resolving a chain of ``kind`` providers ``depth`` deep ends: never a crash."""
    return run_isolated(CHAIN.format(kind=kind, depth=depth), tmp_path).stdout.strip()


def upstream_chain_outcome(depth: int, tmp_path) -> str:
    """The same for upstream's Factory, which may crash (it segfaults at 10,000 on 3.13)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHAIN.format(kind="upstream", depth=depth))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    return result.stdout.strip() if result.returncode == 0 else "crashed"


@pytest.mark.parametrize("depth", [2_000, 10_000, 50_000])
def test_deep_scoped_factory_chain_raises_recursion_error(depth, tmp_path):
    """Deep ScopedFactory chains never crash: RecursionError where upstream raises it, and from 10,000."""
    upstream = upstream_chain_outcome(depth, tmp_path)
    scoped = chain_outcome("scoped", depth, tmp_path)
    if depth >= 10_000 or upstream == "RecursionError":
        assert scoped == "RecursionError", f"upstream's Factory chain: {upstream}"
    else:
        assert scoped in {"RecursionError", "resolved"}


UNINITIALISED = """
    from dependency_injector_scoped import containers, errors, providers

    class SkipsInit(providers.{cls}):
        def __init__(self):
            pass

    provider = {make}
    with containers.DynamicContainer().scope():
        try:
            provider()
        except errors.ScopeError as error:
            print("ScopeError:", error, flush=True)
        else:
            print("no error", flush=True)
"""


@pytest.mark.parametrize("make", ["new", "subclass skipping __init__"])
@pytest.mark.parametrize("cls", ["ScopedFactory", "ScopedResource"])
def test_provider_whose_init_never_ran_raises_scope_error(cls, make, tmp_path):
    """Calling a provider whose __init__ never ran raises ScopeError telling to call super().__init__()."""
    construct = f"providers.{cls}.__new__(providers.{cls})" if make == "new" else "SkipsInit()"
    output = run_isolated(UNINITIALISED.format(cls=cls, make=construct), tmp_path).stdout
    assert output.startswith("ScopeError:"), output
    assert "super().__init__()" in output


# Copying or pickling a Scope is refused ------------------------------------------------


def container() -> containers.DynamicContainer:
    c = containers.DynamicContainer()
    c.item = providers.ScopedFactory(object)
    return c


COPIERS = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.dumps}


@pytest.mark.parametrize("how", sorted(COPIERS))
def test_copying_a_new_scope_raises_type_error(how):
    """copy.copy, copy.deepcopy and pickle.dumps of a new Scope raise TypeError naming Scope."""
    with pytest.raises(TypeError, match="Scope"):
        COPIERS[how](container().scope())


@pytest.mark.parametrize("how", sorted(COPIERS))
def test_copying_an_open_scope_raises_type_error(how):
    """copy.copy, copy.deepcopy and pickle.dumps of an open Scope raise TypeError naming Scope."""
    c = container()
    with c.scope() as s:
        created = c.item()
        with pytest.raises(TypeError, match="Scope"):
            COPIERS[how](s)
        assert c.item() is created
