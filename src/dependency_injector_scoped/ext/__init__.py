"""Integrations with web frameworks, one module per framework.

Each module imports its framework at the top and is imported explicitly, for
example ``from dependency_injector_scoped.ext.starlette import ScopeMiddleware``;
the package itself never imports them.
"""
