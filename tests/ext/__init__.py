"""Tests of the framework integrations (dependency_injector_scoped.ext)."""
