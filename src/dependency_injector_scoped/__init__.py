"""Request-scoped providers for dependency-injector.

``ScopedFactory`` and ``ScopedResource`` give one instance per scope, shared
by every injection site, tasks and threads in it, and finalised, with the
exception that ended the scope, when it exits.
"""

from __future__ import annotations

__version__ = "0.1.0"

# The compiled classes subclass dependency-injector's C structs and vtables,
# which can change even in a patch release: refuse any other upstream build
# before importing them, instead of crashing on the first call.
COMPILED_AGAINST = "4.49.1"


def _check_upstream_version() -> None:
    import dependency_injector

    installed = getattr(dependency_injector, "__version__", "unknown")
    if installed != COMPILED_AGAINST:
        raise ImportError(
            f"dependency-injector-scoped {__version__} was compiled against "
            f"dependency-injector {COMPILED_AGAINST}, but dependency-injector "
            f"{installed} is installed. Install the matching release with "
            f"`pip install dependency-injector=={COMPILED_AGAINST}`, or upgrade "
            "dependency-injector-scoped to a release built for your version."
        )


_check_upstream_version()

from . import containers, errors, providers  # noqa: E402
from ._scope import Scope, get_current_scope  # noqa: E402
from .containers import check_scopes, scope  # noqa: E402

__all__ = [
    "COMPILED_AGAINST",
    "Scope",
    "__version__",
    "check_scopes",
    "containers",
    "errors",
    "get_current_scope",
    "providers",
    "scope",
]
