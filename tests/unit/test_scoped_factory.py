"""ScopedFactory and ScopedResource: one instance per scope, shared by every injection site."""

from __future__ import annotations

import asyncio
import inspect

from dependency_injector import containers as upstream_containers
from dependency_injector import providers as upstream_providers

from dependency_injector_scoped import containers, providers, scope


class Session:
    """A stand-in for a database session."""


class Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


class OtherRepo:
    def __init__(self, session: Session) -> None:
        self.session = session


def open_session():
    yield Session()


class Container(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    repo = providers.Factory(Repo, session=session)
    other_repo = providers.Factory(OtherRepo, session=session)
    scoped_repo = providers.ScopedFactory(Repo, session=session)
    scoped_other_repo = providers.ScopedFactory(OtherRepo, session=session)


def test_upstream_factories_share_the_scope_session():
    """Two upstream Factory dependants built in one scope hold the same session."""
    c = Container()
    with c.scope():
        first, second = c.repo(), c.other_repo()
    assert isinstance(first.session, Session)
    assert first.session is second.session


def test_scoped_and_upstream_dependants_share_the_scope_session():
    """ScopedFactory and Factory dependants built in one scope hold the same session."""
    c = Container()
    with c.scope():
        sessions = {
            id(c.repo().session),
            id(c.scoped_repo().session),
            id(c.scoped_other_repo().session),
        }
        direct = c.session()
        assert sessions == {id(direct)}


def test_sequential_scopes_get_different_sessions():
    """Each of two scopes opened one after the other gets its own session."""
    c = Container()
    with c.scope():
        first = c.repo().session
    with c.scope():
        second = c.repo().session
    assert first is not second


def test_nested_unnamed_scope_gets_its_own_session():
    """An unnamed scope nested in another gets a new session; the outer one keeps its own."""
    c = Container()
    with c.scope():
        outer = c.repo().session
        with c.scope():
            inner = c.repo().session
            assert c.other_repo().session is inner
        assert inner is not outer
        assert c.repo().session is outer


def test_scoped_factory_returns_the_same_instance_within_a_scope():
    """ScopedFactory gives one instance per scope, not one per call."""
    c = Container()
    with c.scope():
        assert c.scoped_repo() is c.scoped_repo()


def test_scoped_factory_returns_a_new_instance_in_the_next_scope():
    """ScopedFactory creates a new instance in each new scope."""
    c = Container()
    with c.scope():
        first = c.scoped_repo()
    with c.scope():
        second = c.scoped_repo()
    assert first is not second
    assert first.session is not second.session


def test_upstream_factory_still_creates_per_call_inside_a_scope():
    """An upstream Factory keeps creating a new object per call inside a scope."""
    c = Container()
    with c.scope():
        assert c.repo() is not c.repo()


def test_nested_scope_creates_its_own_scoped_factory_instance():
    """A ScopedFactory resolved in a nested unnamed scope is not the outer scope's instance."""
    c = Container()
    with c.scope():
        outer = c.scoped_repo()
        with c.scope():
            inner = c.scoped_repo()
        assert inner is not outer
        assert c.scoped_repo() is outer


def test_first_call_arguments_build_the_scope_instance():
    """Arguments of the first call build the instance; later calls return it."""
    counter = []

    def build(value):
        counter.append(value)
        return {"value": value}

    class Local(containers.DeclarativeContainer):
        item = providers.ScopedFactory(build)

    c = Local()
    with c.scope():
        first = c.item(1)
        assert c.item(2) is first
    assert first == {"value": 1}
    assert counter == [1]


def test_free_scope_function_works_with_an_upstream_container():
    """scope(container) opens scopes for a plain dependency-injector container."""

    class Upstream(upstream_containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        repo = upstream_providers.Factory(Repo, session=session)

    c = Upstream()
    with scope(c):
        first = c.repo().session
        assert c.repo().session is first
    with scope(c):
        assert c.repo().session is not first


async def test_async_scope_shares_the_session_between_dependants():
    """In `async with`, upstream and scoped dependants of an async session return awaitables of one session."""

    async def open_async_session():
        yield Session()

    class Async(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_async_session)
        repo = providers.Factory(Repo, session=session)
        scoped_repo = providers.ScopedFactory(OtherRepo, session=session)

    c = Async()
    async with c.scope():
        pending_repo = c.repo()
        pending_scoped = c.scoped_repo()
        assert inspect.isawaitable(pending_repo) and inspect.isawaitable(pending_scoped)
        repo, scoped = await pending_repo, await pending_scoped
        assert isinstance(repo.session, Session)
        assert repo.session is scoped.session
        assert repo.session is await c.session()
        first = repo.session
    async with c.scope():
        assert (await c.repo()).session is not first


async def test_async_creation_returns_an_awaitable_at_every_call():
    """A ScopedFactory whose creation must await returns an awaitable, also once its instance exists."""

    async def connect():
        await asyncio.sleep(0)
        return Session()

    class Async(containers.DeclarativeContainer):
        connection = providers.Coroutine(connect)
        repo = providers.ScopedFactory(Repo, session=connection)

    c = Async()
    async with c.scope():
        pending = c.repo()
        assert inspect.isawaitable(pending)
        repo = await pending
        again = c.repo()
        assert inspect.isawaitable(again)
        assert await again is repo
        assert isinstance(repo.session, Session)


async def test_async_method_always_returns_an_awaitable():
    """provider.async_() returns an awaitable of the instance even once it exists."""
    c = Container()
    async with c.scope():
        created = c.scoped_repo()
        again = c.scoped_repo.async_()
        assert inspect.isawaitable(again)
        assert await again is created
        session = c.session()
        awaited = c.session.async_()
        assert inspect.isawaitable(awaited)
        assert await awaited is session


async def test_async_method_creates_on_first_call():
    """provider.async_() on the first resolution creates the instance and returns it awaited."""
    c = Container()
    async with c.scope():
        repo = await c.scoped_repo.async_()
        assert c.scoped_repo() is repo


def test_scoped_factory_attribute_injections_use_the_scope_instance():
    """Attribute injections of a ScopedFactory receive the scope's session."""

    class Holder:
        session: Session

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        holder = providers.ScopedFactory(Holder)
        holder.add_attributes(session=session)

    c = Local()
    with c.scope():
        assert c.holder().session is c.session()


def test_overridden_scoped_factory_calls_the_override():
    """An overridden ScopedFactory returns what its override provides."""
    c = Container()
    replacement = Repo(Session())
    with c.scoped_repo.override(providers.Object(replacement)), c.scope():
        assert c.scoped_repo() is replacement


def test_injection_named_scope_can_be_set_with_add_kwargs():
    """An injection literally named `scope` is given with add_kwargs and reaches the callable."""

    def build(scope):
        return {"scope": scope}

    item = providers.ScopedFactory(build)
    item.add_kwargs(scope="request")
    assert item.scope_name is None
    with scope(containers.DynamicContainer()):
        assert item() == {"scope": "request"}


async def test_async_mode_enabled_always_returns_an_awaitable():
    """A ScopedFactory with async mode enabled returns an awaitable of its one instance on every call."""
    c = Container()
    c.scoped_repo.enable_async_mode()
    async with c.scope():
        first = c.scoped_repo()
        assert inspect.isawaitable(first)
        repo = await first
        second = c.scoped_repo()
        assert inspect.isawaitable(second)
        assert await second is repo
