"""ScopedValue: values given when a scope opened, innermost first."""

from __future__ import annotations

import pytest

from dependency_injector_scoped import containers, errors, providers, scope


class Request:
    """A key that is a type."""


class Handler:
    def __init__(self, request: object, user: object) -> None:
        self.request = request
        self.user = user


class Container(containers.DeclarativeContainer):
    request = providers.ScopedValue("request")
    user = providers.ScopedValue("user")
    tenant = providers.ScopedValue("tenant", scope="app")
    typed = providers.ScopedValue(Request)
    handler = providers.ScopedFactory(Handler, request=request, user=user)


def test_value_given_on_opening_is_provided():
    """A ScopedValue returns the object given in values= when the scope opened."""
    c = Container()
    given = object()
    with c.scope(values={"request": given}):
        assert c.request() is given


def test_value_is_injected_into_dependants():
    """A ScopedValue injected into a ScopedFactory receives the scope's value."""
    c = Container()
    with c.scope(values={"request": "r1", "user": "alice"}):
        handler = c.handler()
    assert (handler.request, handler.user) == ("r1", "alice")


def test_innermost_scope_value_wins():
    """When nested scopes both hold a key, the innermost one's value is provided."""
    c = Container()
    with c.scope(values={"request": "outer"}):
        with c.scope(values={"request": "inner"}):
            assert c.request() == "inner"
        assert c.request() == "outer"


def test_value_missing_in_the_inner_scope_comes_from_an_outer_one():
    """A key held only by an outer scope is found from an inner scope."""
    c = Container()
    with c.scope(values={"user": "alice"}):
        with c.scope(values={"request": "r1"}):
            assert (c.request(), c.user()) == ("r1", "alice")


def test_missing_value_raises_missing_scope_value_error():
    """A ScopedValue whose key no open scope holds raises MissingScopeValueError naming it."""
    c = Container()
    with c.scope(values={"user": "alice"}):
        with pytest.raises(errors.MissingScopeValueError) as caught:
            c.request()
    message = str(caught.value)
    assert "'request'" in message and "values=" in message


def test_value_outside_any_scope_raises_no_active_scope_error():
    """A ScopedValue resolved with no scope open raises NoActiveScopeError."""
    with pytest.raises(errors.NoActiveScopeError, match="'request'"):
        Container().request()


def test_named_value_reads_only_its_scope():
    """A ScopedValue bound to 'app' reads the app scope's values, not an inner scope's."""
    c = Container()
    with c.scope("app", values={"tenant": "acme"}):
        with c.scope(values={"tenant": "inner"}):
            assert c.tenant() == "acme"


def test_named_value_missing_from_its_scope_raises():
    """A ScopedValue bound to 'app' does not fall back to other scopes' values."""
    c = Container()
    with c.scope("app"):
        with c.scope(values={"tenant": "inner"}):
            with pytest.raises(errors.MissingScopeValueError, match="'tenant'"):
                c.tenant()


def test_named_value_without_its_scope_raises_no_active_scope_error():
    """A ScopedValue bound to 'app' with no app scope open raises NoActiveScopeError."""
    c = Container()
    with c.scope(values={"tenant": "acme"}):
        with pytest.raises(errors.NoActiveScopeError, match="'app'"):
            c.tenant()


def test_type_keys_are_supported():
    """Keys may be types as well as strings."""
    c = Container()
    request = Request()
    with c.scope(values={Request: request}):
        assert c.typed() is request


def test_values_are_copied_when_the_scope_is_created():
    """Changing the mapping after creating the scope does not change what it provides."""
    c = Container()
    given = {"request": "r1"}
    s = c.scope(values=given)
    given["request"] = "changed"
    with s:
        assert c.request() == "r1"


def test_overridden_value_returns_the_override():
    """An overridden ScopedValue returns its override, even outside a scope."""
    c = Container()
    with c.request.override(providers.Object("fake")):
        assert c.request() == "fake"


def test_free_function_passes_values():
    """scope(container, values=...) provides its values to ScopedValue too."""
    c = Container()
    with scope(c, values={"user": "bob"}):
        assert c.user() == "bob"


def test_key_and_scope_name_are_exposed():
    """A ScopedValue exposes its key and the scope name it reads from."""
    c = Container()
    assert (c.request.key, c.request.scope_name) == ("request", None)
    assert (c.tenant.key, c.tenant.scope_name) == ("tenant", "app")
