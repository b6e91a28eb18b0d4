"""Errors raised by scoped providers and scopes.

All subclass :class:`dependency_injector.errors.Error`, so code that already
catches upstream's errors catches these too.
"""

from __future__ import annotations

import sys

from dependency_injector.errors import Error

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup

__all__ = [
    "CaptiveDependencyError",
    "Error",
    "FinalizerError",
    "MissingScopeValueError",
    "NoActiveScopeError",
    "ScopeClosedError",
    "ScopeError",
]


class ScopeError(Error):
    """A scope or scoped provider was used the wrong way."""


class NoActiveScopeError(ScopeError):
    """A scoped provider was resolved where no matching scope is open."""


class ScopeClosedError(ScopeError):
    """A scoped provider was resolved through a scope that has closed."""


class MissingScopeValueError(ScopeError):
    """A ``ScopedValue`` was resolved, but no open scope was given its key."""


class CaptiveDependencyError(ScopeError):
    """An app-lifetime provider depends on a scoped one and would capture it."""


class FinalizerError(ExceptionGroup, Error):  # type: ignore[misc, unused-ignore]
    """One or more finalisers failed while a scope closed cleanly.

    Every finaliser still ran; ``exceptions`` holds each failure in reverse
    order of creation of the resources.
    """
