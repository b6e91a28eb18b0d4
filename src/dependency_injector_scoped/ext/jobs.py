"""Jobs, CLI commands and scripts: one scope per call of a function.

:func:`in_scope` decorates a function so that every call runs in a fresh
scope of a container; it needs no framework, so it serves Click or Typer
commands, arq and taskiq jobs, cron scripts and plain functions alike::

    @click.command()
    @click.argument("name")
    @in_scope(container)
    @inject
    def add_user(name: str, users: UserRepository = Provide[Container.users]) -> None:
        users.add(name)

Which scope
    A synchronous function runs in ``with scope(container, name, values=values):``,
    a coroutine function in ``async with`` (so its async resources work and the
    synchronous finalisers run in a worker thread).  Each call gets its own
    scope, also when calls overlap in threads or tasks.  Scoped resources stay
    lazy: a call creates only what it resolves.  The kind is that of the
    function decorated: put ``in_scope`` on the coroutine function itself, not
    on a synchronous wrapper that returns its coroutine.

When it commits
    The scope closes cleanly, so a session resource commits, only when the
    function returns.  If it raises, whatever the exception (``SystemExit``,
    ``KeyboardInterrupt`` and task cancellation included), the scope closes
    with that exception, every finaliser receives it (rollback), and it
    propagates unchanged.  A command that calls ``sys.exit(0)`` or Click's
    ``ctx.exit()`` inside the decorated function therefore rolls back: return
    instead.  If a finaliser fails after the function returned (the commit
    broke a constraint), the call raises
    :class:`~dependency_injector_scoped.errors.FinalizerError` instead of
    returning.

Injection
    Parameters marked with dependency-injector's ``Provide[...]`` are resolved
    inside the scope, once the module is wired (``container.wire(modules=...)``
    or ``wiring_config``, as dependency-injector requires).  :func:`in_scope` makes the function injectable itself
    (it applies ``@inject`` when nothing in the function's ``__wrapped__``
    chain is injectable yet), so ``@inject`` is optional; written under
    ``@in_scope`` it is used as it is.  The returned wrapper's signature lists
    only the parameters a caller passes (the injected ones are left out), so
    ``container.wire()`` never re-patches the wrapper, or a ``functools.wraps``
    wrapper around it, to resolve the markers before the scope opens: it binds
    the inner injectable function, which lives in the same module.  An
    ``@inject`` written above ``@in_scope`` finds nothing to inject and
    dependency-injector warns that it is not required there.  Passing an
    injected parameter explicitly still overrides the injection.

Generators
    Generator and async generator functions are refused: their body runs after
    the call returns, outside any scope the call could open.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar, cast

from dependency_injector import wiring

from dependency_injector_scoped import scope as open_scope

__all__ = ["in_scope"]

_Function = TypeVar("_Function", bound=Callable[..., Any])


def in_scope(
    container: Any,
    name: str | None = None,
    *,
    values: Mapping[Hashable, Any] | None = None,
) -> Callable[[_Function], _Function]:
    """Decorate a function so that each call runs in a fresh scope of ``container``.

    ``name`` names the scopes (providers declared with ``scope="job"`` bind to
    ``name="job"``); ``values`` is given to every scope, for
    ``providers.ScopedValue``.  Coroutine functions get ``async with``, other
    functions ``with``.  See the module documentation for when the scope
    commits and how injection composes with ``@inject`` and ``wire()``.
    """

    def decorate(function: _Function) -> _Function:
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"in_scope() cannot decorate the generator function {function.__qualname__}: "
                "its body runs after the call returns, outside the scope; open "
                "`with container.scope():` inside it instead"
            )
        target = _injectable(function)
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with open_scope(container, name, values=values):
                    return await target(*args, **kwargs)

        else:

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with open_scope(container, name, values=values):
                    return target(*args, **kwargs)

        wrapper.__signature__ = _callers_signature(function)  # type: ignore[attr-defined]
        return cast(_Function, wrapper)

    return decorate


def _injectable(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` itself if it or a function it wraps is injectable, else ``inject(function)``."""
    if not _markers(function):
        return function
    candidate: Any = function
    seen: set[int] = set()
    while candidate is not None and id(candidate) not in seen:
        # The pinned dependency-injector release keeps its injectable
        # functions in this registry; wire() binds the ones of a module.
        if wiring._is_patched(candidate):
            return function
        seen.add(id(candidate))
        candidate = getattr(candidate, "__wrapped__", None)
    return wiring.inject(function)


def _markers(function: Callable[..., Any]) -> dict[str, Any]:
    """The parameters of ``function`` that dependency-injector injects, by name."""
    injections, _closing = wiring._fetch_reference_injections(function)
    return injections


def _callers_signature(function: Callable[..., Any]) -> inspect.Signature | None:
    """The signature of ``function`` without its injected parameters."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    injected = _markers(function)
    return signature.replace(
        parameters=[
            parameter
            for parameter in signature.parameters.values()
            if parameter.name not in injected
        ]
    )
