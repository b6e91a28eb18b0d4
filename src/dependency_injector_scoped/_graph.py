"""The scoped graph of a container, checked once, when its first scope is created.

``plan_for(container)`` names the container's scoped providers (for error
messages), rejects captive dependencies, and returns the eager plan: the
scoped resources that ``Scope.init()`` initialises.  The plan is cached on the
container; this package's containers drop it when a provider is assigned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dependency_injector import providers as upstream

from .errors import CaptiveDependencyError
from .providers import ScopedFactory, ScopedResource, ScopedValue

PLAN_ATTRIBUTE = "__scoped_plan__"

SCOPED_TYPES = (ScopedFactory, ScopedResource, ScopedValue)

# Providers that keep what they create for longer than a scope.
APP_LIFETIME_TYPES = (upstream.BaseSingleton, upstream.BaseResource)

EagerPlan = tuple[tuple[ScopedResource[Any], Any, bool], ...]


def plan_for(container: Any) -> EagerPlan:
    """Check ``container``'s scoped graph and return (and cache) its eager plan."""
    names = provider_names(container)
    for provider, name in names.items():
        if isinstance(provider, SCOPED_TYPES) and not provider._name:
            provider._name = name
    reachable = list(container.traverse())
    check_captive_dependencies(reachable, names)
    plan = tuple(
        (provider, provider.scope_name, provider.is_async)
        for provider in sorted(
            (provider for provider in reachable if isinstance(provider, ScopedResource)),
            key=lambda provider: names.get(provider, ""),
        )
    )
    try:
        setattr(container, PLAN_ATTRIBUTE, plan)
    except (AttributeError, TypeError):  # pragma: no cover - exotic containers
        pass
    return plan


def forget_plan(container: Any) -> None:
    """Drop the cached plan, so the next scope checks the graph again."""
    container.__dict__.pop(PLAN_ATTRIBUTE, None)


def provider_names(container: Any, prefix: str = "") -> dict[Any, str]:
    """Map every provider of ``container`` (nested containers too) to its dotted name."""
    names: dict[Any, str] = {}
    for name, provider in container.providers.items():
        names.setdefault(provider, prefix + name)
        if isinstance(provider, upstream.Container):
            for nested, nested_name in provider_names(
                provider.container, f"{prefix}{name}."
            ).items():
                names.setdefault(nested, nested_name)
    return names


def dependencies(provider: Any) -> Iterator[Any]:
    """What calling ``provider`` calls: its overriding provider, or its own injections."""
    overriding = provider.last_overriding
    if overriding is not None:
        yield overriding
        return
    if isinstance(provider, (upstream.Delegate, upstream.Self)) or upstream.is_delegated(provider):
        return  # ``.provider`` hands over the provider itself, not an instance.
    if isinstance(provider, upstream.Dependency):
        return  # Undefined dependency: nothing is called.
    overridden = provider.overridden
    for related in provider.related:
        if not any(related is item for item in overridden):
            yield related


def check_captive_dependencies(reachable: list[Any], names: dict[Any, str]) -> None:
    """Reject an app-lifetime provider whose dependencies reach a scoped provider."""
    for root in reachable:
        if not isinstance(root, APP_LIFETIME_TYPES) or isinstance(root, ScopedResource):
            continue
        if root.last_overriding is not None:
            continue
        chain = _path_to_scoped(root, [root], set())
        if chain is None:
            continue
        labels = " -> ".join(_label(provider, names) for provider in chain)
        captive, scoped = _label(root, names), _label(chain[-1], names)
        raise CaptiveDependencyError(
            f"{captive} lives for the whole app but depends on the scoped {scoped} "
            f"({labels}); it would keep the first scope's instance after that scope "
            f"closed. Make {captive} a ScopedFactory, or inject `{_bare(chain[-1], names)}"
            ".provider` and call it inside a scope."
        )


def _path_to_scoped(provider: Any, path: list[Any], seen: set[int]) -> list[Any] | None:
    for dependency in dependencies(provider):
        if id(dependency) in seen:
            continue
        seen.add(id(dependency))
        if isinstance(dependency, SCOPED_TYPES):
            return [*path, dependency]
        found = _path_to_scoped(dependency, [*path, dependency], seen)
        if found is not None:
            return found
    return None


def _label(provider: Any, names: dict[Any, str]) -> str:
    name = names.get(provider)
    kind = type(provider).__name__
    return f"{kind} {name!r}" if name else repr(provider)


def _bare(provider: Any, names: dict[Any, str]) -> str:
    return names.get(provider) or type(provider).__name__
