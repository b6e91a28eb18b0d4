"""The scoped graph of a container, checked when its first scope is created.

``plan_for(container)`` names the container's scoped providers (for error
messages), rejects captive dependencies, decides which scoped providers are
asynchronous, and returns the container's :class:`~._scope.Plan`: the eager
resources its scopes create when they open and the scoped providers they
serve.  The plan is cached on the container and made again after an
override.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from dependency_injector import providers as upstream
from dependency_injector import resources

from ._scope import Plan, plan_generation
from .errors import CaptiveDependencyError
from .providers import ScopedFactory, ScopedResource, ScopedValue

PLAN_ATTRIBUTE = "__scoped_plan__"

SCOPED_TYPES = (ScopedFactory, ScopedResource, ScopedValue)
CREATING_TYPES = (ScopedFactory, ScopedResource)

# Providers that keep what they create for longer than a scope.
APP_LIFETIME_TYPES = (upstream.BaseSingleton, upstream.BaseResource)


def plan_for(container: Any) -> Plan:
    """Check ``container``'s scoped graph and return (and cache) its plan."""
    generation = plan_generation()
    names = provider_names(container)
    for provider, name in names.items():
        if isinstance(provider, SCOPED_TYPES) and not provider._name:
            provider._name = name
    reachable = reachable_providers(container)
    check_captive_dependencies(reachable, names)
    mark_asynchronous(reachable)
    creating = [provider for provider in reachable if isinstance(provider, CREATING_TYPES)]
    eager = sorted(
        (p for p in creating if isinstance(p, ScopedResource) and p.eager),
        key=lambda provider: names.get(provider, ""),
    )
    plan = Plan(eager, creating, container_label(container), generation)
    try:
        setattr(container, PLAN_ATTRIBUTE, plan)
    except (AttributeError, TypeError):  # pragma: no cover - exotic containers
        pass
    return plan


def container_label(container: Any) -> str:
    """The container's class name, as users declared it."""
    parent = getattr(container, "declarative_parent", None)
    return (parent if parent is not None else type(container)).__name__


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


def reachable_providers(container: Any) -> list[Any]:
    """Every provider the container's providers reach, nested containers' included."""
    seen: dict[int, Any] = {}
    pending = list(container.providers.values())
    while pending:
        provider = pending.pop()
        if id(provider) in seen:
            continue
        seen[id(provider)] = provider
        if isinstance(provider, upstream.Container):
            pending.extend(provider.container.providers.values())
        pending.extend(provider.related)
    return list(seen.values())


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


def mark_asynchronous(reachable: list[Any]) -> None:
    """Put every scoped provider whose creation needs an await in async mode.

    A provider is asynchronous when its own initializer is, or when anything
    it may call is: its injections and its overriding providers alike, so an
    asynchronous provider stays asynchronous when a test overrides it with a
    synchronous fake.
    """
    memo: dict[int, bool] = {}
    for provider in reachable:
        if isinstance(provider, CREATING_TYPES) and _is_async(provider, memo, set()):
            provider.enable_async_mode()


def _is_async(provider: Any, memo: dict[int, bool], visiting: set[int]) -> bool:
    key = id(provider)
    known = memo.get(key)
    if known is not None:
        return known
    if key in visiting:
        return False
    visiting.add(key)
    result = _declared_async(provider) or any(
        _is_async(dependency, memo, visiting) for dependency in _callees(provider)
    )
    visiting.discard(key)
    memo[key] = result
    return result


def _callees(provider: Any) -> Iterator[Any]:
    if isinstance(provider, (upstream.Delegate, upstream.Self)) or upstream.is_delegated(provider):
        return
    if isinstance(provider, upstream.Dependency) and provider.last_overriding is None:
        return
    yield from provider.related


def _declared_async(provider: Any) -> bool:
    if provider.is_async_mode_enabled():
        return True
    if isinstance(provider, ScopedResource):
        return bool(provider.is_async)
    if isinstance(provider, ScopedFactory):
        return inspect.iscoroutinefunction(provider.provides)
    if isinstance(provider, upstream.Coroutine):
        return True
    if isinstance(provider, upstream.BaseResource):
        initializer = provider.provides
        return (
            inspect.isasyncgenfunction(initializer)
            or inspect.iscoroutinefunction(initializer)
            or (isinstance(initializer, type) and issubclass(initializer, resources.AsyncResource))
        )
    return False


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
