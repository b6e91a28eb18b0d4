"""``help()`` and ``inspect.signature`` show the real signatures of the compiled classes."""

from __future__ import annotations

import inspect
import pydoc

import pytest

from dependency_injector_scoped import Scope, providers

SIGNATURES = [
    (providers.ScopedFactory, "(provides=None, *args, scope=None, **kwargs)"),
    (
        providers.ScopedResource,
        "(provides=None, *args, scope=None, eager=False, close_in_thread=True, **kwargs)",
    ),
    (providers.ScopedValue, "(key=None, *, scope=None)"),
    (Scope, "(container=None, name=None, values=None)"),
    (Scope.init, "(self, /)"),
    (Scope.shutdown, "(self, /, exc=None)"),
    (providers.ScopedFactory.async_, "(self, /, *args, **kwargs)"),
    (providers.ScopedResource.async_, "(self, /, *args, **kwargs)"),
]


@pytest.mark.parametrize(
    ("target", "expected"), SIGNATURES, ids=lambda item: getattr(item, "__qualname__", "")
)
def test_signature_is_introspectable(target: object, expected: str) -> None:
    """inspect.signature gives the constructor's or method's parameters."""
    assert str(inspect.signature(target)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cls", [providers.ScopedFactory, providers.ScopedResource, providers.ScopedValue, Scope]
)
def test_help_shows_the_signature_once_and_the_description(cls: type) -> None:
    """help() shows the class's signature, then its description (no signature line in it)."""
    # pydoc may wrap a long signature over several lines (3.13 does): compare without layout.
    text = "".join(pydoc.render_doc(cls, renderer=pydoc.plaintext).replace("|", "").split())
    signature = "".join(f"{cls.__name__}{inspect.signature(cls)}".split())
    assert text.count(signature) == 1
    assert inspect.getdoc(cls).splitlines()[0].strip()
    assert not inspect.getdoc(cls).startswith(cls.__name__ + "(")


def test_constructing_with_the_documented_keywords_works() -> None:
    """The keywords the signature names are accepted."""
    resource = providers.ScopedResource(object, scope="app", eager=True, close_in_thread=False)
    assert (resource.scope_name, resource.eager, resource.close_in_thread) == ("app", True, False)
    assert providers.ScopedValue("request", scope="app").scope_name == "app"
