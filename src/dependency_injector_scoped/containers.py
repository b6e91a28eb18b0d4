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
from ._scope import Plan, Scope, invalidate_plans, new_scope_for, open_scope
from .providers import _owner_ref

__all__ = [
    "Container",
    "DeclarativeContainer",
    "DeclarativeContainerMetaClass",
    "DynamicContainer",
    "ProvidersOverridingContext",
    "SingletonResetContext",
    "WiringConfiguration",
    "check_scopes",
    "copy",
    "is_container",
    "override",
    "scope",
]


class DynamicContainer(_upstream.DynamicContainer):
    """Dynamic container whose instances open scopes with ``scope()``."""

    scope = open_scope

    def check_scopes(self) -> None:
        """Check the scoped graph now: raise ``CaptiveDependencyError`` for a captive.

        The first scope does this too; integrations call it when the app
        starts, so a misconfigured app fails to start instead of failing
        every request.
        """
        _graph.plan_for(self)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in self.__dict__.get("providers", ()):
            _own_scoped(value, name, self)
            invalidate_plans()

    def __delattr__(self, name: str) -> None:
        was_provider = name in self.__dict__.get("providers", ())
        super().__delattr__(name)
        if was_provider:
            invalidate_plans()

    # Any override may change a scoped graph: the next scope of every
    # container checks its graph again.

    def override(self, overriding: Any) -> None:
        """Override this container's providers with ``overriding``'s."""
        super().override(overriding)
        invalidate_plans()

    def override_providers(self, **overriding_providers: Any) -> Any:
        """Override providers by name; returns upstream's overriding context."""
        context: Any = super().override_providers(**overriding_providers)
        invalidate_plans()
        return context

    def reset_last_overriding(self) -> None:
        """Undo the last container override."""
        super().reset_last_overriding()
        invalidate_plans()

    def reset_override(self) -> None:
        """Undo every override."""
        super().reset_override()
        invalidate_plans()


class DeclarativeContainer(_upstream.DeclarativeContainer):
    """Declarative container whose instances open scopes with ``scope()``."""

    instance_type = DynamicContainer

    if TYPE_CHECKING:
        # Instances are DynamicContainers at run time; this tells type
        # checkers about the methods they get from it.
        def scope(
            self, name: str | None = None, *, values: Mapping[Any, Any] | None = None
        ) -> Scope:
            """Return a new, unopened scope of this container."""

        def check_scopes(self) -> None:
            """Check the scoped graph now."""


def scope(
    container: Any, name: str | None = None, *, values: Mapping[Any, Any] | None = None
) -> Scope:
    """Return a new, unopened scope of any dependency-injector container.

    ``name`` lets providers declared with ``scope="name"`` bind to it;
    ``values`` is a mapping read by ``providers.ScopedValue``.
    """
    plan = getattr(container, _graph.PLAN_ATTRIBUTE, None)
    if not isinstance(plan, Plan) or not plan.is_current:
        plan = _graph.plan_for(container)
    return new_scope_for(container, name, values, plan)


def check_scopes(container: Any) -> None:
    """Check any container's scoped graph now: raise ``CaptiveDependencyError`` for a captive."""
    _graph.plan_for(container)


def _own_scoped(provider: Any, name: str, container: Any) -> None:
    if isinstance(provider, _graph.SCOPED_TYPES):
        provider._name = name
    if isinstance(provider, _graph.CREATING_TYPES) and provider._binding is not None:
        provider._binding.owner = _owner_ref(container)
