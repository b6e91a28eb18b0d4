"""Named scopes: providers declared with scope="name" bind to the nearest open scope of that name."""

from __future__ import annotations

import contextlib

import pytest

from dependency_injector_scoped import containers, errors, providers, scope


class Thing:
    def __init__(self, *parts: object) -> None:
        self.parts = parts


def recording(events: list[str], label: str):
    def initializer():
        events.append(f"open {label}")
        yield Thing(label)
        events.append(f"close {label}")

    return initializer


def make_container(events: list[str]):
    class Local(containers.DeclarativeContainer):
        pool = providers.ScopedResource(recording(events, "pool"), scope="app")
        session = providers.ScopedResource(recording(events, "session"))
        app_service = providers.ScopedFactory(Thing, pool, scope="app")
        request_service = providers.ScopedFactory(Thing, pool, session)

    return Local()


def test_app_bound_resource_is_shared_by_two_inner_scopes():
    """A resource bound to 'app' is the same in two inner unnamed scopes; unnamed ones differ."""
    events: list[str] = []
    c = make_container(events)
    with c.scope("app") as app:
        with c.scope():
            first_pool, first_session = c.pool(), c.session()
        with c.scope():
            second_pool, second_session = c.pool(), c.session()
        assert c.pool in app
    assert first_pool is second_pool
    assert first_session is not second_session


def test_app_bound_resource_is_finalised_with_the_app_scope():
    """The app-bound resource, first resolved in an inner scope, is finalised when the app scope exits."""
    events: list[str] = []
    c = make_container(events)
    with c.scope("app"):
        assert events == []
        with c.scope():
            c.pool()
            c.session()
            assert events == ["open pool", "open session"]
        assert events == ["open pool", "open session", "close session"]
    assert events == ["open pool", "open session", "close session", "close pool"]


def test_app_bound_scoped_factory_lives_in_the_app_scope():
    """A ScopedFactory bound to 'app' resolved in inner scopes is created once, in the app scope."""
    events: list[str] = []
    c = make_container(events)
    with c.scope("app") as app:
        with c.scope() as inner:
            first = c.app_service()
            assert c.app_service in app
            assert c.app_service not in inner
        with c.scope():
            assert c.app_service() is first
        assert c.app_service() is first


def test_unnamed_dependant_combines_app_and_request_instances():
    """An unnamed ScopedFactory gets the app scope's pool and its own scope's session."""
    events: list[str] = []
    c = make_container(events)
    with c.scope("app"):
        with c.scope():
            first = c.request_service()
        with c.scope():
            second = c.request_service()
    assert first is not second
    assert first.parts[0] is second.parts[0]
    assert first.parts[1] is not second.parts[1]


def test_unnamed_provider_binds_to_a_named_scope_when_it_is_innermost():
    """With only the app scope open, an unnamed provider binds to it and is finalised with it."""
    events: list[str] = []
    c = make_container(events)
    with c.scope("app") as app:
        session = c.session()
        assert c.session in app
        assert c.session() is session
        assert events == ["open session"]
    assert events == ["open session", "close session"]


def test_provider_binds_to_the_nearest_scope_of_its_name():
    """With two nested 'app' scopes, an app-bound provider binds to the inner one."""
    events: list[str] = []
    c = make_container(events)
    with c.scope("app") as outer:
        outer_pool = c.pool()
        with c.scope("app") as inner:
            assert c.pool() is not outer_pool
            assert c.pool in inner
        assert c.pool() is outer_pool
        assert c.pool in outer


def test_named_scope_via_the_free_function():
    """scope(container, name='app') is a named scope like container.scope('app')."""
    events: list[str] = []
    c = make_container(events)
    with scope(c, name="app"):
        with scope(c):
            pool = c.pool()
        with scope(c):
            assert c.pool() is pool


def test_outer_bound_provider_resolves_unnamed_dependencies_in_its_own_scope():
    """An app-bound provider's unnamed scoped dependency is created in the app scope, not the request's."""

    class Local(containers.DeclarativeContainer):
        helper = providers.ScopedFactory(Thing, "helper")
        cache = providers.ScopedFactory(Thing, helper, scope="app")

    c = Local()
    with c.scope("app") as app:
        with c.scope() as first:
            cache = c.cache()
            assert c.helper not in first
        with c.scope() as second:
            assert c.cache() is cache
            assert c.helper() is not cache.parts[0]
            assert c.helper in second
        assert c.helper in app
        assert c.helper() is cache.parts[0]


def test_outer_bound_provider_cannot_capture_a_request_bound_dependency():
    """An app-bound provider depending on a request-bound one raises NoActiveScopeError instead of capturing it."""

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedFactory(Thing, "session", scope="request")
        cache = providers.ScopedFactory(Thing, session, scope="app")

    c = Local()
    with c.scope("app"), c.scope("request"):
        assert isinstance(c.session(), Thing)
        with pytest.raises(errors.NoActiveScopeError, match="'session'"):
            c.cache()


def test_outer_bound_provider_cannot_capture_through_an_upstream_factory():
    """The app scope is current while an app-bound provider is built, also behind an upstream Factory."""

    class Local(containers.DeclarativeContainer):
        request = providers.ScopedValue("request")
        wrapper = providers.Factory(Thing, request)
        cache = providers.ScopedFactory(Thing, wrapper, scope="app")

    c = Local()
    with c.scope("app"), c.scope(values={"request": "GET /"}):
        assert c.wrapper().parts == ("GET /",)
        with pytest.raises(errors.MissingScopeValueError, match="'request'"):
            c.cache()
        assert c.wrapper().parts == ("GET /",)


def test_named_scope_is_found_through_unnamed_and_other_named_scopes():
    """The lookup skips unnamed scopes and other names, at any depth, and matches equal names."""
    events: list[str] = []
    c = make_container(events)
    app_name = "".join(["a", "pp"])  # equal to "app", not the same object
    with contextlib.ExitStack() as stack:
        stack.enter_context(c.scope(app_name))
        pool = c.pool()
        for depth in range(60):
            stack.enter_context(c.scope("tenant" if depth % 20 == 0 else None))
        assert c.pool() is pool
        inner_app = stack.enter_context(c.scope("app"))
        stack.enter_context(c.scope())
        stack.enter_context(c.scope("tenant"))
        assert c.pool() is not pool
        assert c.pool() is c.pool()
        assert c.pool in inner_app
    assert events == ["open pool", "open pool", "close pool", "close pool"]


def test_named_scope_missing_above_deep_unnamed_nesting_raises():
    """Without a scope of its name above, however deep the unnamed nesting, it is NoActiveScopeError."""
    c = make_container([])
    with contextlib.ExitStack() as stack:
        for _ in range(30):
            stack.enter_context(c.scope())
        with pytest.raises(errors.NoActiveScopeError):
            c.pool()
