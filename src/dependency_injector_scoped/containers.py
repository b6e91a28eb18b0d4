"""Containers: dependency-injector's containers, with ``container.scope()``.

Every public name of :mod:`dependency_injector.containers` is re-exported.
:class:`DeclarativeContainer` and :class:`DynamicContainer` give instances
with a ``scope(name=None, *, values=None)`` method that returns a new
:class:`~dependency_injector_scoped.Scope`; for any other container use
:func:`dependency_injector_scoped.scope`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dependency_injector import containers as _upstream
from dependency_injector.containers import (  # type: ignore[attr-defined]
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

if TYPE_CHECKING:
    from ._scope import Scope

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


class DynamicContainer(_upstream.DynamicContainer):
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

    # Overriding through the container re-checks the scoped graph at the next
    # scope (captive dependencies an override brings in, eager resources).
    # Overriding a provider directly (``container.session.override(...)``)
    # is followed by the eager plan, but not re-checked for captives.

    def override(self, overriding: Any) -> None:
        """Override this container's providers with ``overriding``'s."""
        super().override(overriding)
        _graph.forget_plan(self)

    def override_providers(self, **overriding_providers: Any) -> Any:
        """Override providers by name; returns upstream's overriding context."""
        context: Any = super().override_providers(**overriding_providers)
        _graph.forget_plan(self)
        return context

    def reset_last_overriding(self) -> None:
        """Undo the last container override."""
        super().reset_last_overriding()
        _graph.forget_plan(self)

    def reset_override(self) -> None:
        """Undo every override."""
        super().reset_override()
        _graph.forget_plan(self)


class DeclarativeContainer(_upstream.DeclarativeContainer):
    """Declarative container whose instances open scopes with ``scope()``."""

    instance_type = DynamicContainer

    if TYPE_CHECKING:
        # Instances are DynamicContainers at run time; this tells type
        # checkers about the method they get from it.
        def scope(
            self, name: str | None = None, *, values: Mapping[Any, Any] | None = None
        ) -> Scope:
            """Return a new, unopened scope of this container."""


def _name_scoped(provider: Any, name: str) -> None:
    if isinstance(provider, _graph.SCOPED_TYPES):
        provider._name = name
