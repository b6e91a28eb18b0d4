"""The Scope token: introspection, the current scope, nesting, and scopes nobody closed."""

from __future__ import annotations

import contextvars
import gc
import warnings

import pytest

from dependency_injector_scoped import (
    Scope,
    containers,
    errors,
    get_current_scope,
    providers,
    scope,
)


def open_session():
    yield object()


class Container(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    users = providers.ScopedFactory(dict, session=session)


def test_scope_is_a_new_unopened_token():
    """container.scope() returns a Scope that is neither open nor closed."""
    c = Container()
    s = c.scope()
    assert isinstance(s, Scope)
    assert not s.is_open
    assert not s.closed
    assert s.container is c
    assert s.name is None
    assert s.parent is None
    assert get_current_scope() is None


def test_is_open_and_closed_follow_the_scope_lifetime():
    """is_open is True only inside the scope; closed is True once it has exited."""
    s = Container().scope()
    with s as entered:
        assert entered is s
        assert s.is_open
        assert not s.closed
    assert not s.is_open
    assert s.closed


def test_get_current_scope_follows_nesting():
    """get_current_scope() is the innermost open scope; inner scopes link to their parent."""
    c = Container()
    assert get_current_scope() is None
    with c.scope("app") as outer:
        assert get_current_scope() is outer
        with c.scope() as inner:
            assert get_current_scope() is inner
            assert inner.parent is outer
            assert outer.parent is None
        assert get_current_scope() is outer
    assert get_current_scope() is None


async def test_get_current_scope_in_an_async_scope():
    """`async with` makes the scope current for the rest of the block, and restores it after."""
    c = Container()
    async with c.scope() as s:
        assert get_current_scope() is s
    assert get_current_scope() is None


def test_explicit_init_makes_the_scope_current_until_shutdown():
    """init() makes the scope current in this context; shutdown() restores the previous one."""
    s = Container().scope()
    s.init()
    assert get_current_scope() is s
    assert s.is_open
    s.shutdown()
    assert get_current_scope() is None
    assert s.closed


def test_contains_tells_whether_a_provider_has_an_instance():
    """`provider in scope` is True once the provider has an instance in that scope only."""
    c = Container()
    with c.scope() as outer:
        assert c.session not in outer
        assert c.users not in outer
        c.users()
        assert c.users in outer
        assert c.session in outer
        with c.scope() as inner:
            assert c.users not in inner
            assert c.session not in inner
            c.session()
            assert c.session in inner
            assert c.users not in inner
        assert c.users in outer
    assert c.users not in outer
    assert c.session not in outer


def test_contains_is_false_for_unrelated_objects():
    """`in` is False for providers never resolved in the scope and for non-providers."""
    c = Container()
    with c.scope() as s:
        assert providers.Factory(dict) not in s
        assert "session" not in s


def test_name_and_values_are_exposed():
    """A scope exposes its name and a copy of its values."""
    c = Container()
    given = {"request": "r1"}
    s = c.scope("request", values=given)
    assert s.name == "request"
    assert s.values == {"request": "r1"}
    s.values["request"] = "changed"
    given["request"] = "changed too"
    assert s.values == {"request": "r1"}
    assert Container().scope().values == {}


def test_free_function_names_the_scope():
    """scope(container, name=..., values=...) gives the same kind of token."""
    c = Container()
    s = scope(c, name="job", values={"id": 1})
    assert isinstance(s, Scope)
    assert (s.name, s.values, s.container) == ("job", {"id": 1}, c)


def test_repr_shows_name_and_state():
    """repr(scope) shows its name and whether it is new, open or closed."""
    s = Container().scope("request")
    assert "'request'" in repr(s) and "new" in repr(s)
    with s:
        assert "open" in repr(s)
    assert "closed" in repr(s)


def test_scopes_of_different_containers_nest():
    """A scope of another container nests inside: it serves its own container's providers, not the outer one's."""
    first, second = Container(), Container()
    with first.scope() as outer:
        outer_session = first.session()
        with second.scope() as inner:
            assert inner.parent is outer
            assert get_current_scope() is inner
            inner_session = second.session()
            assert second.session in inner
            assert inner_session is not outer_session
            with pytest.raises(errors.NoActiveScopeError, match="'session'"):
                first.session()
            assert first.session not in inner
        assert first.session() is outer_session
        assert second.session not in outer


# Scopes nobody closed -----------------------------------------------------------


def open_and_forget(c: Container) -> None:
    s = c.scope()
    s.init()
    c.users()


def test_open_scope_with_resources_warns_when_garbage_collected():
    """An open scope holding resources emits ResourceWarning when it is garbage-collected."""
    c = Container()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contextvars.copy_context().run(open_and_forget, c)
        gc.collect()
    messages = [
        str(warning.message) for warning in caught if issubclass(warning.category, ResourceWarning)
    ]
    assert len(messages) == 1
    assert "never finalised" in messages[0]
    assert get_current_scope() is None


def test_closed_scope_does_not_warn_when_garbage_collected():
    """A scope that was closed emits no ResourceWarning when collected."""
    c = Container()

    def open_and_close():
        s = c.scope()
        s.init()
        c.users()
        s.shutdown()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contextvars.copy_context().run(open_and_close)
        gc.collect()
    assert not [warning for warning in caught if issubclass(warning.category, ResourceWarning)]


def test_open_scope_without_resources_does_not_warn():
    """An open scope that holds no resource to finalise is dropped silently."""
    c = containers.DynamicContainer()
    users = providers.ScopedFactory(dict)

    def open_and_forget_plain():
        s = scope(c)
        s.init()
        users()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contextvars.copy_context().run(open_and_forget_plain)
        gc.collect()
    assert not [warning for warning in caught if issubclass(warning.category, ResourceWarning)]
