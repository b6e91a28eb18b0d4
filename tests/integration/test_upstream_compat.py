"""Scoped providers inside the rest of dependency-injector's machinery."""

from __future__ import annotations

import asyncio
import copy
import inspect

import pytest
from dependency_injector import containers as upstream_containers
from dependency_injector import providers as upstream_providers

from dependency_injector_scoped import containers, errors, get_current_scope, providers, scope


class Session:
    def __init__(self, label: str = "session") -> None:
        self.label = label
        self.closed = False

    def greet(self, name: str) -> str:
        return f"{self.label}:{name}"


class Repository:
    def __init__(self, session: object) -> None:
        self.session = session


class Log:
    """Records initialiser and finaliser calls of the resources of one test."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def session_resource(self, label: str = "session"):
        def open_session():
            session = Session(label)
            self.events.append(f"open {label}")
            try:
                yield session
            finally:
                session.closed = True
                self.events.append(f"close {label}")

        return open_session

    def async_session_resource(self, label: str = "session"):
        async def open_session():
            session = Session(label)
            self.events.append(f"open {label}")
            try:
                yield session
            finally:
                session.closed = True
                self.events.append(f"close {label}")

        return open_session


async def maybe_await(value: object) -> object:
    if inspect.isawaitable(value):
        return await value
    return value


# Declarative inheritance ---------------------------------------------------


def test_child_container_inherits_and_adds_scoped_providers() -> None:
    """A child container adds a ScopedFactory on its parent's ScopedResource and Singleton."""
    log = Log()

    class Base(containers.DeclarativeContainer):
        engine = providers.Singleton(object)
        session = providers.ScopedResource(log.session_resource())

    class Child(Base):
        users = providers.ScopedFactory(Repository, session=Base.session)
        audit = providers.ScopedFactory(Holder, engine=Base.engine, session=Base.session)

    container = Child()
    with container.scope():
        users = container.users()
        assert users is container.users()
        assert users.session is container.session()
        assert container.audit().kwargs == {"engine": container.engine(), "session": users.session}
    assert log.events == ["open session", "close session"]


def test_child_container_scoped_provider_is_named_in_errors() -> None:
    """An inherited container names its own scoped provider in NoActiveScopeError."""

    class Base(containers.DeclarativeContainer):
        session = providers.ScopedResource(Log().session_resource())

    class Child(Base):
        users = providers.ScopedFactory(Repository, session=Base.session)

    container = Child()
    with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
        container.users()


def test_child_container_redefines_a_scoped_provider() -> None:
    """A child may replace the parent's ScopedResource; the parent keeps its own."""
    log = Log()

    class Base(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("base"))

    class Child(Base):
        session = providers.ScopedResource(log.session_resource("child"))

    child, base = Child(), Base()
    with child.scope():
        assert child.session().label == "child"
    with base.scope():
        assert base.session().label == "base"
    assert log.events == ["open child", "close child", "open base", "close base"]


class Holder:
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args
        self.kwargs = kwargs


# Nested containers -----------------------------------------------------------


def test_nested_container_scoped_providers_resolve_in_parent_scope() -> None:
    """providers.Container(Sub) scoped providers resolve once per scope opened on the parent."""
    log = Log()

    class Sub(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("sub"))
        users = providers.ScopedFactory(Repository, session=session)

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(Sub)

    container = Container()
    with container.scope():
        first = container.sub.users()
        assert first is container.sub.users()
        assert first.session is container.sub.session()
    with container.scope():
        second = container.sub.users()
    assert second is not first
    assert first.session.closed
    assert second.session.closed


def test_nested_container_eager_scoped_resource_is_initialised_on_parent_scope_entry() -> None:
    """Entering the parent's scope initialises a nested container's eager ScopedResource."""
    log = Log()

    class Sub(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("sub"), eager=True)

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(Sub)

    container = Container()
    with container.scope():
        assert log.events == ["open sub"]
        assert container.sub.session().label == "sub"
        assert log.events == ["open sub"]
    assert log.events == ["open sub", "close sub"]


def test_nested_container_lazy_scoped_resource_waits_for_its_first_resolution() -> None:
    """A nested container's ScopedResource is created at its first resolution in a scope."""
    log = Log()

    class Sub(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("sub"))

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(Sub)

    container = Container()
    with container.scope():
        assert log.events == []
        session = container.sub.session()
        assert log.events == ["open sub"]
        assert container.sub.session() is session
    assert log.events == ["open sub", "close sub"]
    with container.scope():
        pass
    assert log.events == ["open sub", "close sub"]


def test_parent_scoped_factory_on_nested_scoped_resource() -> None:
    """A parent ScopedFactory injected with a nested ScopedResource shares its instance."""

    class Sub(containers.DeclarativeContainer):
        session = providers.ScopedResource(Log().session_resource())

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(Sub)
        users = providers.ScopedFactory(Repository, session=sub.session)

    container = Container()
    with container.scope():
        assert container.users().session is container.sub.session()


def test_nested_container_with_dependencies_from_parent() -> None:
    """A nested container's Dependency wired to the parent's ScopedResource resolves per scope."""

    class Sub(containers.DeclarativeContainer):
        session = providers.Dependency()
        users = providers.ScopedFactory(Repository, session=session)

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(Log().session_resource())
        sub = providers.Container(Sub, session=session)

    container = Container()
    with container.scope():
        assert container.sub.users().session is container.session()


# Dynamic containers and the free function -----------------------------------


def test_dynamic_container_scope_method() -> None:
    """containers.DynamicContainer has scope() and names its providers."""
    log = Log()
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(log.session_resource())
    container.users = providers.ScopedFactory(Repository, session=container.session)

    with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
        container.users()
    with container.scope() as opened:
        assert get_current_scope() is opened
        assert opened.container is container
        assert container.users().session is container.session()
    assert log.events == ["open session", "close session"]


def test_dynamic_container_set_providers() -> None:
    """set_providers() on a DynamicContainer adds scoped providers usable in a scope."""
    container = containers.DynamicContainer()
    session = providers.ScopedFactory(Session)
    container.set_providers(
        session=session, users=providers.ScopedFactory(Repository, session=session)
    )
    with container.scope():
        assert container.users().session is container.session()


def test_dynamic_container_deleted_eager_resource_is_no_longer_initialised() -> None:
    """An eager ScopedResource deleted from a DynamicContainer is no longer initialised on entry."""
    log = Log()
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(log.session_resource(), eager=True)
    with container.scope():
        pass
    del container.session
    with container.scope():
        pass
    assert log.events == ["open session", "close session"]


def test_dynamic_container_added_eager_resource_is_initialised() -> None:
    """An eager ScopedResource added to a DynamicContainer after a scope is created next time."""
    log = Log()
    container = containers.DynamicContainer()
    container.users = providers.ScopedFactory(Session)
    with container.scope():
        pass
    container.session = providers.ScopedResource(log.session_resource(), eager=True)
    with container.scope():
        assert log.events == ["open session"]
    assert log.events == ["open session", "close session"]


def test_free_scope_on_upstream_dynamic_container() -> None:
    """scope() works on a plain dependency_injector DynamicContainer."""
    log = Log()
    container = upstream_containers.DynamicContainer()
    container.session = providers.ScopedResource(log.session_resource())
    container.users = providers.ScopedFactory(Repository, session=container.session)

    with scope(container) as opened:
        assert opened.container is container
        assert log.events == []
        assert container.users().session is container.session()
        assert log.events == ["open session"]
    assert log.events == ["open session", "close session"]


def test_free_scope_on_upstream_declarative_container() -> None:
    """scope() works on an instance of a plain dependency_injector DeclarativeContainer."""
    log = Log()

    class Container(upstream_containers.DeclarativeContainer):
        engine = upstream_providers.Singleton(object)
        session = providers.ScopedResource(log.session_resource())
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    with scope(container, "request", values={"id": 7}) as opened:
        assert opened.name == "request"
        assert opened.values == {"id": 7}
        first = container.users()
        assert first is container.users()
    with scope(container):
        assert container.users() is not first
    assert log.events == ["open session", "close session", "open session", "close session"]


def test_free_scope_names_providers_of_upstream_container() -> None:
    """After scope() checked an upstream container, errors name its scoped providers."""

    class Container(upstream_containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)

    container = Container()
    with scope(container):
        pass
    with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
        container.users()


async def test_free_scope_async_on_upstream_container() -> None:
    """`async with scope(upstream_container)` initialises async scoped resources."""
    log = Log()
    container = upstream_containers.DynamicContainer()
    container.session = providers.ScopedResource(log.async_session_resource())
    async with scope(container):
        session = await asyncio.wait_for(container.session(), 5)
        assert isinstance(session, Session)
        assert await container.session() is session
        assert not session.closed
    assert session.closed
    assert log.events == ["open session", "close session"]


# Overriding -------------------------------------------------------------------


def test_overridden_scoped_resource_never_calls_its_initialiser() -> None:
    """With `session.override(Object(fake))`, entering a scope does not run the real initialiser."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource(), eager=True)
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    fake = Session("fake")
    with container.session.override(providers.Object(fake)), container.scope():
        assert log.events == []
        assert container.session() is fake
        assert container.users().session is fake
    assert log.events == []


async def test_overridden_async_scoped_resource_never_calls_its_initialiser() -> None:
    """An overridden eager async ScopedResource is skipped on `async with` entry and resolution."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.async_session_resource(), eager=True)
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    fake = Session("fake")
    with container.session.override(providers.Object(fake)):
        async with container.scope():
            assert log.events == []
            assert await container.session() is fake
            assert (await container.users()).session is fake
    assert log.events == []


def test_overridden_async_scoped_resource_allows_a_sync_scope() -> None:
    """An async ScopedResource overridden with an Object does not refuse `with` scopes.

    The provider stays asynchronous: its result is an awaitable of the fake,
    which completes without suspending.
    """
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.async_session_resource())

    container = Container()
    fake = Session("fake")
    with container.session.override(providers.Object(fake)), container.scope():
        result = container.session()
        assert inspect.isawaitable(result)
        assert asyncio.run(maybe_await(result)) is fake
    assert log.events == []


def test_overridden_nested_scoped_resource_never_calls_its_initialiser() -> None:
    """An overridden ScopedResource of a nested container is not initialised on entry."""
    log = Log()

    class Sub(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("sub"), eager=True)
        users = providers.ScopedFactory(Repository, session=session)

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(Sub)

    container = Container()
    fake = Session("fake")
    with container.sub.session.override(providers.Object(fake)), container.scope():
        assert log.events == []
        assert container.sub.users().session is fake
    assert log.events == []


def test_override_providers_context_and_reset() -> None:
    """override_providers() swaps a scoped provider; leaving it restores the real one."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource())
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    fake = Session("fake")
    with container.override_providers(session=providers.Object(fake)), container.scope():
        assert container.users().session is fake
    assert log.events == []
    with container.scope():
        assert container.users().session is not fake
    assert log.events == ["open session", "close session"]


def test_reset_override_restores_the_scoped_provider() -> None:
    """reset_override() after override() brings back per-scope instances."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)

    container = Container()
    fake = Session("fake")
    container.users.override(providers.Object(fake))
    with container.scope():
        assert container.users() is fake
    container.users.reset_override()
    with container.scope():
        real = container.users()
        assert real is not fake
        assert real is container.users()


def test_scoped_factory_overridden_by_another_scoped_factory() -> None:
    """A ScopedFactory overridden by another ScopedFactory still gives one instance per scope."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session, "real")

    container = Container()
    container.users.override(providers.ScopedFactory(Session, "replacement"))
    with container.scope():
        first = container.users()
        assert first.label == "replacement"
        assert first is container.users()
    with container.scope():
        assert container.users() is not first


def test_container_override_with_another_container() -> None:
    """Overriding a whole container replaces its scoped providers by name."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("real"))
        users = providers.ScopedFactory(Repository, session=session)

    class Overriding(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("test"))

    container = Container()
    container.override(Overriding())
    with container.scope():
        assert container.users().session.label == "test"
    assert log.events == ["open test", "close test"]


def test_eager_override_after_first_scope_is_initialised_on_entry() -> None:
    """An eager ScopedResource override made after the first scope is initialised on entry."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource("real"), eager=True)
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    with container.scope():
        assert log.events == ["open real"]
    log.events.clear()
    fake = providers.ScopedResource(log.session_resource("fake"), eager=True)
    with container.session.override(fake), container.scope():
        assert log.events == ["open fake"]
        assert container.users().session.label == "fake"
    assert log.events == ["open fake", "close fake"]


async def test_async_override_after_first_scope_resolves_through_an_await() -> None:
    """In `async with`, an async override made after the first scope is awaited and used."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.async_session_resource("real"))
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    async with container.scope():
        assert isinstance(await container.users(), Repository)
    assert log.events == ["open real", "close real"]
    log.events.clear()
    with container.session.override(providers.ScopedResource(log.async_session_resource("fake"))):
        async with container.scope():
            pending = container.users()
            assert inspect.isawaitable(pending)
            users = await asyncio.wait_for(pending, 5)
            assert users.session.label == "fake"
            again = container.users()
            assert inspect.isawaitable(again)
            assert await again is users
    assert log.events == ["open fake", "close fake"]


async def test_async_override_before_first_scope_resolves_through_an_await() -> None:
    """In `async with`, an async override made before any scope is awaited and used."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.async_session_resource("real"))
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    with container.session.override(providers.ScopedResource(log.async_session_resource("fake"))):
        async with container.scope():
            assert log.events == []
            pending = container.users()
            assert inspect.isawaitable(pending)
            users = await asyncio.wait_for(pending, 5)
            assert isinstance(users, Repository)
            assert users.session.label == "fake"
            assert log.events == ["open fake"]
    assert log.events == ["open fake", "close fake"]


# Copying --------------------------------------------------------------------


@pytest.mark.parametrize("deepcopy", [providers.deepcopy, copy.deepcopy], ids=["providers", "copy"])
def test_deepcopy_of_scoped_providers_keeps_scope_names(deepcopy) -> None:
    """Deep copies of scoped providers keep their type and scope name."""
    factory = providers.ScopedFactory(Session, scope="request")
    resource = providers.ScopedResource(Log().session_resource(), scope="request")
    value = providers.ScopedValue("key", scope="request")
    for original in (factory, resource, value):
        copied = deepcopy(original)
        assert copied is not original
        assert type(copied) is type(original)
        assert copied.scope_name == "request"
    assert deepcopy(value).key == "key"


def test_deepcopied_scoped_factory_is_still_scoped() -> None:
    """A deep-copied ScopedFactory gives one instance per scope, separate from the original's."""
    container = containers.DynamicContainer()
    container.users = providers.ScopedFactory(Session)
    container.copied = providers.deepcopy(container.users)
    with container.scope():
        assert container.copied() is container.copied()
        assert container.copied() is not container.users()
    with pytest.raises(errors.NoActiveScopeError):
        container.copied()


def test_deepcopied_named_scoped_factory_binds_to_its_scope() -> None:
    """A deep copy of `ScopedFactory(..., scope='request')` still needs the 'request' scope."""
    container = containers.DynamicContainer()
    container.users = providers.deepcopy(providers.ScopedFactory(Session, scope="request"))
    with container.scope(), pytest.raises(errors.NoActiveScopeError, match="request"):
        container.users()
    with container.scope("request"), container.scope():
        assert container.users() is container.users()


def test_deepcopy_of_container_keeps_scoped_graph() -> None:
    """copy.deepcopy(container) has its own scoped providers, names and scope()."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource(), scope="request")
        users = providers.ScopedFactory(Repository, session=session, scope="request")

    original = Container()
    copied = copy.deepcopy(original)
    assert copied.users is not original.users
    assert copied.session.scope_name == "request"
    assert copied.users.scope_name == "request"
    assert isinstance(copied, containers.DynamicContainer)
    with copied.scope("request"):
        assert log.events == []
        users = copied.users()
        assert users.session is copied.session()
        assert log.events == ["open session"]
        with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
            original.users()
    assert log.events == ["open session", "close session"]
    with original.scope("request"):
        assert original.users() is not users
    assert log.events == ["open session", "close session", "open session", "close session"]
    with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
        copied.users()


def test_deepcopy_of_container_does_not_share_instances() -> None:
    """Scopes of a copied container and of the original hold separate instances."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)

    original = Container()
    copied = copy.deepcopy(original)
    with original.scope():
        from_original = original.users()
        with copied.scope():
            from_copy = copied.users()
            assert from_copy is not from_original
            assert copied.users() is from_copy
            with pytest.raises(errors.NoActiveScopeError, match="ScopedFactory 'users'"):
                original.users()
        assert original.users() is from_original


# Traversal and .provided -----------------------------------------------------


def test_traverse_finds_scoped_resources() -> None:
    """container.traverse(types=[ScopedResource]) finds every ScopedResource, nested ones too."""

    class Sub(containers.DeclarativeContainer):
        cache = providers.ScopedResource(Log().session_resource("cache"))

    class Container(containers.DeclarativeContainer):
        engine = providers.Singleton(object)
        session = providers.ScopedResource(Log().session_resource())
        users = providers.ScopedFactory(Repository, session=session)
        sub = providers.Container(Sub)

    container = Container()
    found = set(container.traverse(types=[providers.ScopedResource]))
    assert found == {container.session, container.sub.cache}
    assert set(container.traverse(types=[providers.ScopedFactory])) == {container.users}


def test_traverse_base_resource_includes_scoped_resources() -> None:
    """ScopedResource is a BaseResource: upstream traversal by resource type sees it."""

    class Container(containers.DeclarativeContainer):
        connection = providers.Resource(lambda: "connection")
        session = providers.ScopedResource(Log().session_resource())

    container = Container()
    assert set(container.traverse(types=[providers.BaseResource])) == {
        container.connection,
        container.session,
    }


def test_provided_attribute_of_scoped_resource() -> None:
    """`session.provided.label` resolves the attribute of the scope's instance."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(Log().session_resource("req"))
        label = session.provided.label
        users = providers.ScopedFactory(Holder, label=session.provided.label)

    container = Container()
    with container.scope():
        assert container.session.provided.label() == "req"
        assert container.label() == "req"
        assert container.users().kwargs == {"label": "req"}


def test_provided_method_call_of_scoped_resource() -> None:
    """`session.provided.greet.call('x')` calls the method of the scope's instance."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(Log().session_resource("req"))
        greeting = session.provided.greet.call("ann")
        users = providers.ScopedFactory(Holder, greeting=session.provided.greet.call("bob"))

    container = Container()
    with container.scope():
        assert container.greeting() == "req:ann"
        assert container.session.provided.greet.call("eve")() == "req:eve"
        assert container.users().kwargs == {"greeting": "req:bob"}


def test_provided_outside_scope_raises_no_active_scope() -> None:
    """`.provided` of a scoped provider outside a scope raises NoActiveScopeError."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(Log().session_resource())

    container = Container()
    with pytest.raises(errors.NoActiveScopeError):
        container.session.provided.label()


# init_resources / shutdown_resources ----------------------------------------


def make_mixed_container(log: Log) -> containers.DeclarativeContainer:
    def connection():
        log.events.append("open connection")
        yield "connection"
        log.events.append("close connection")

    class Container(containers.DeclarativeContainer):
        connection_ = providers.Resource(connection)
        session = providers.ScopedResource(log.session_resource())
        users = providers.ScopedFactory(Repository, session=session)

    return Container()


def test_init_resources_outside_scope_skips_scoped_resources() -> None:
    """init_resources() initialises upstream Resources and never calls a scoped initialiser."""
    log = Log()
    container = make_mixed_container(log)
    assert container.init_resources() is None
    assert log.events == ["open connection"]
    assert container.connection_.initialized
    assert not container.session.initialized
    container.shutdown_resources()
    assert log.events == ["open connection", "close connection"]


def test_shutdown_resources_outside_scope_does_not_fail() -> None:
    """shutdown_resources() with only scoped resources and nothing initialised is a no-op."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource())

    container = Container()
    container.init_resources()
    container.shutdown_resources()
    assert log.events == []


def test_init_and_shutdown_resources_inside_scope() -> None:
    """Inside a scope, init/shutdown_resources() keep the scope's session open and the same."""
    log = Log()
    container = make_mixed_container(log)
    with container.scope():
        session = container.session()
        container.init_resources()
        assert container.session() is session
        container.shutdown_resources()
        assert not session.closed
        assert log.events == ["open session", "open connection", "close connection"]
    assert session.closed
    assert log.events[-1] == "close session"


def test_init_resources_inside_scope_initialises_lazy_named_resource() -> None:
    """init_resources() inside a 'request' scope initialises a resource bound to it once."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.session_resource(), scope="request")

    container = Container()
    with container.scope("request") as request, container.scope():
        assert log.events == []
        container.init_resources()
        assert log.events == ["open session"]
        assert container.session in request
        container.init_resources()
        assert log.events == ["open session"]
    assert log.events == ["open session", "close session"]


async def test_async_init_and_shutdown_resources_outside_scope() -> None:
    """In an async container, init/shutdown_resources() handle upstream async Resources only."""
    log = Log()

    async def connection():
        log.events.append("open connection")
        yield "connection"
        log.events.append("close connection")

    class Container(containers.DeclarativeContainer):
        connection_ = providers.Resource(connection)
        session = providers.ScopedResource(log.async_session_resource())
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    await asyncio.wait_for(maybe_await(container.init_resources()), 5)
    assert log.events == ["open connection"]
    await asyncio.wait_for(maybe_await(container.shutdown_resources()), 5)
    assert log.events == ["open connection", "close connection"]


async def test_async_init_and_shutdown_resources_inside_scope_do_not_hang() -> None:
    """Inside `async with`, init/shutdown_resources() finish and leave the session open."""
    log = Log()

    async def connection():
        log.events.append("open connection")
        yield "connection"
        log.events.append("close connection")

    class Container(containers.DeclarativeContainer):
        connection_ = providers.Resource(connection)
        session = providers.ScopedResource(log.async_session_resource())
        users = providers.ScopedFactory(Repository, session=session)

    container = Container()
    async with container.scope():
        session = await container.session()
        await asyncio.wait_for(maybe_await(container.init_resources()), 5)
        assert (await container.users()).session is session
        assert await container.session() is session
        await asyncio.wait_for(maybe_await(container.shutdown_resources()), 5)
        assert not session.closed
    assert session.closed
    assert log.events == ["open session", "open connection", "close connection", "close session"]


async def test_async_init_resources_inside_scope_initialises_named_async_resource() -> None:
    """init_resources() in an inner scope initialises an async resource of the named outer one."""
    log = Log()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(log.async_session_resource(), scope="request")

    container = Container()
    async with container.scope("request"), container.scope():
        await asyncio.wait_for(maybe_await(container.init_resources()), 5)
        assert log.events == ["open session"]
        assert isinstance(await container.session(), Session)
        assert log.events == ["open session"]
    assert log.events == ["open session", "close session"]
