"""Overrides, named outer scopes, which containers a scope serves, and the startup captive check."""

from __future__ import annotations

import asyncio

import pytest
from dependency_injector import containers as upstream_containers
from dependency_injector import providers as upstream_providers

import dependency_injector_scoped
from dependency_injector_scoped import containers, errors, get_current_scope, providers


class Session:
    pass


class Repo:
    def __init__(self, session: object) -> None:
        self.session = session


class Holder:
    def __init__(self, dependency: object) -> None:
        self.dependency = dependency


def open_real_session():
    yield Session()


class Shop(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_real_session)
    users = providers.ScopedFactory(Repo, session=session)
    orders = providers.ScopedFactory(Repo, session=session)


def recording_fake(events: list[str], *, asynchronous: bool = False):
    """A fake session initializer recording 'open' and 'close'."""

    def open_fake():
        events.append("open")
        yield Session()
        events.append("close")

    async def open_async_fake():
        events.append("open")
        yield Session()
        events.append("close")

    return open_async_fake if asynchronous else open_fake


# Overrides ------------------------------------------------------------------------------


def test_override_bound_to_another_scope_name_is_shared_by_inner_scopes():
    """An override bound to "app" gives one fake for the app scope, shared by its inner scopes."""
    events: list[str] = []
    c = Shop()
    c.session.override(providers.ScopedResource(recording_fake(events), scope="app"))
    with c.scope("app"):
        with c.scope():
            first = c.users().session
            assert c.orders().session is first
        with c.scope():
            assert c.users().session is first
        assert events == ["open"]
    assert events == ["open", "close"]


def test_override_bound_to_another_scope_name_leaves_other_scopes_working():
    """With an override bound to "app", a scope that never resolves it opens and serves the rest."""
    events: list[str] = []
    c = Shop()
    c.other = providers.ScopedFactory(Session)
    c.session.override(providers.ScopedResource(recording_fake(events), scope="app"))
    with c.scope():
        assert isinstance(c.other(), Session)
        with pytest.raises(errors.NoActiveScopeError, match="'app'"):
            c.session()
    assert events == []


async def test_async_override_bound_to_another_scope_name_is_shared_by_inner_scopes():
    """An async override bound to "app" gives one fake for the app scope, shared by inner scopes."""
    events: list[str] = []
    c = Shop()
    fake = recording_fake(events, asynchronous=True)
    c.session.override(providers.ScopedResource(fake, scope="app"))
    async with c.scope("app"):
        async with c.scope():
            first = (await c.users.async_()).session
            assert (await c.orders.async_()).session is first
        async with c.scope():
            assert (await c.users.async_()).session is first
        assert events == ["open"]
    assert events == ["open", "close"]


def test_override_providers_with_a_scoped_resource_gives_one_fake_per_scope():
    """override_providers(session=ScopedResource(fake)): two repos share one fake per scope."""
    events: list[str] = []
    c = Shop()
    with c.override_providers(session=providers.ScopedResource(recording_fake(events))):
        sessions = []
        for _ in range(2):
            with c.scope():
                users, orders = c.users(), c.orders()
                assert users.session is orders.session
                sessions.append(users.session)
    assert sessions[0] is not sessions[1]
    assert events == ["open", "close", "open", "close"]


async def test_override_providers_with_an_async_scoped_resource_gives_one_fake_per_scope():
    """override_providers with an async fake: two repos share one fake per `async with` scope."""
    events: list[str] = []
    c = Shop()
    fake = providers.ScopedResource(recording_fake(events, asynchronous=True))
    with c.override_providers(session=fake):
        for _ in range(2):
            async with c.scope():
                users, orders = await c.users.async_(), await c.orders.async_()
                assert users.session is orders.session
    assert events == ["open", "close", "open", "close"]


class Cached(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_real_session)
    users = providers.ScopedFactory(Repo, session=session)
    settings = providers.Factory(dict)
    cache = providers.Singleton(Holder, settings)


OVERRIDES_BRINGING_A_CAPTIVE = {
    # The Singleton `cache` would now reach the scoped session through `settings`.
    "a factory overridden by the session": lambda c: c.settings.override(c.session),
    # The scoped `users` now resolves to a Singleton holding the first scope's session.
    "a scoped provider overridden by a singleton": lambda c: c.users.override(
        providers.Singleton(Repo, c.session)
    ),
}


@pytest.mark.parametrize("override", sorted(OVERRIDES_BRINGING_A_CAPTIVE))
def test_direct_override_after_the_first_scope_is_checked_for_captives(override):
    """A direct .override() made after the first scope that brings a captive fails the next scope."""
    c = Cached()
    with c.scope():
        c.users()
    OVERRIDES_BRINGING_A_CAPTIVE[override](c)
    with pytest.raises(errors.CaptiveDependencyError, match="'session'"):
        with c.scope():
            pass
    assert get_current_scope() is None


# A provider bound to an outer named scope ------------------------------------------------


@pytest.mark.parametrize("kind", ["ScopedFactory", "ScopedResource"])
async def test_outer_bound_async_initializer_sees_the_outer_scope_after_an_await(kind):
    """An "app"-bound provider's async initializer still sees the app scope after an await."""
    seen: list[object] = []

    async def build():
        await asyncio.sleep(0)
        seen.append(get_current_scope())
        return Session()

    async def open_thing():
        yield await build()

    c = containers.DynamicContainer()
    if kind == "ScopedFactory":
        c.thing = providers.ScopedFactory(build, scope="app")
    else:
        c.thing = providers.ScopedResource(open_thing, scope="app")
    async with c.scope("app") as app:
        async with c.scope() as request:
            assert isinstance(await c.thing(), Session)
            assert get_current_scope() is request
    assert seen == [app]


# Which containers a scope serves ----------------------------------------------------------


class OrdersContainer(containers.DeclarativeContainer):
    orders = providers.ScopedFactory(Session)


class BillingContainer(containers.DeclarativeContainer):
    invoices = providers.ScopedFactory(Session)


def test_scope_of_one_container_refuses_another_containers_scoped_provider():
    """A scope opened on container A raises NoActiveScopeError for B's provider, naming both."""
    orders, billing = OrdersContainer(), BillingContainer()
    with orders.scope() as s:
        with pytest.raises(errors.NoActiveScopeError) as caught:
            billing.invoices()
        assert billing.invoices not in s
    message = str(caught.value)
    assert "OrdersContainer" in message
    assert "BillingContainer" in message


class Inner(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_real_session)
    users = providers.ScopedFactory(Repo, session=session)


class Outer(containers.DeclarativeContainer):
    inner = providers.Container(Inner)
    orders = providers.ScopedFactory(Repo, session=inner.session)


def test_scope_serves_the_providers_of_nested_containers():
    """A scope opened on a container serves the scoped providers of its nested containers."""
    c = Outer()
    with c.scope():
        session = c.inner.session()
        assert c.inner.users().session is session
        assert c.orders().session is session
    with c.scope():
        assert c.inner.session() is not session


# The captive check at startup ---------------------------------------------------------------


class Captive(containers.DeclarativeContainer):
    users = providers.ScopedFactory(Session)
    cache = providers.Singleton(Holder, users)


class UpstreamCaptive(upstream_containers.DeclarativeContainer):
    users = providers.ScopedFactory(Session)
    cache = upstream_providers.Singleton(Holder, users)


class UpstreamCorrect(upstream_containers.DeclarativeContainer):
    users = providers.ScopedFactory(Session)
    cache = upstream_providers.Singleton(dict)
    repo = upstream_providers.Factory(Repo, users)


def test_check_scopes_rejects_a_captive_dependency():
    """container.check_scopes() raises CaptiveDependencyError without opening a scope."""
    with pytest.raises(errors.CaptiveDependencyError, match="'users'"):
        Captive().check_scopes()
    assert get_current_scope() is None


def test_check_scopes_returns_none_for_a_correct_container():
    """container.check_scopes() returns None when no app-lifetime provider reaches a scoped one."""
    assert Shop().check_scopes() is None


def test_module_check_scopes_rejects_a_captive_in_an_upstream_container():
    """dependency_injector_scoped.check_scopes(container) rejects a captive of any container."""
    with pytest.raises(errors.CaptiveDependencyError, match="'users'"):
        dependency_injector_scoped.check_scopes(UpstreamCaptive())


def test_module_check_scopes_returns_none_for_a_correct_upstream_container():
    """dependency_injector_scoped.check_scopes(container) returns None for a correct container."""
    assert dependency_injector_scoped.check_scopes(UpstreamCorrect()) is None
