"""Containers: dependency-injector's containers, with ``container.scope()``.

Every public name of :mod:`dependency_injector.containers` is re-exported.
:class:`DeclarativeContainer` and :class:`DynamicContainer` give instances
with a ``scope(name=None, *, values=None)`` method that returns a new
:class:`~dependency_injector_scoped.Scope`; for any other container use
:func:`dependency_injector_scoped.scope`.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers as _upstream
from dependency_injector.containers import (
    Container,
    DeclarativeContainerMetaClass,
    ProvidersOverridingContext,
    SingletonResetContext,
    WiringConfiguration,
    copy,
    is_container,
    override,
)

from . import _graph
from ._scope import open_scope

__all__ = [
    "Container",
    "DeclarativeContainer",
    "DeclarativeContainerMetaClass",
    "DynamicContainer",
    "ProvidersOverridingContext",
    "SingletonResetContext",
    "WiringConfiguration",
    "copy",
    "is_container",
    "override",
]


class DynamicContainer(_upstream.DynamicContainer):  # type: ignore[misc]
    """Dynamic container whose instances open scopes with ``scope()``."""

    scope = open_scope

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in self.__dict__.get("providers", ()):
            _name_scoped(value, name)
            _graph.forget_plan(self)

    def __delattr__(self, name: str) -> None:
        was_provider = name in self.__dict__.get("providers", ())
        super().__delattr__(name)
        if was_provider:
            _graph.forget_plan(self)


class DeclarativeContainer(_upstream.DeclarativeContainer):  # type: ignore[misc]
    """Declarative container whose instances open scopes with ``scope()``."""

    instance_type = DynamicContainer


def _name_scoped(provider: Any, name: str) -> None:
    if isinstance(provider, _graph.SCOPED_TYPES):
        provider._name = name
