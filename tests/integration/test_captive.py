"""Captive dependencies: app-lifetime providers must not reach scoped ones."""

from __future__ import annotations

import re

import pytest
from dependency_injector import containers as upstream_containers
from dependency_injector import providers as upstream_providers

from dependency_injector_scoped import containers, errors, providers, scope


class Session:
    """A stand-in for a per-request session."""


class Repository:
    def __init__(self, session: object) -> None:
        self.session = session


class Holder:
    def __init__(self, dependency: object) -> None:
        self.dependency = dependency


def open_session():
    yield Session()


def connect(dependency: object) -> Holder:
    return Holder(dependency)


APP_LIFETIME = {
    "Singleton": providers.Singleton,
    "ThreadSafeSingleton": providers.ThreadSafeSingleton,
    "ThreadLocalSingleton": providers.ThreadLocalSingleton,
    "ContextLocalSingleton": providers.ContextLocalSingleton,
}


def scoped_target(kind: str):
    if kind == "ScopedFactory":
        return providers.ScopedFactory(Session)
    if kind == "ScopedResource":
        return providers.ScopedResource(open_session)
    return providers.ScopedValue("request")


def assert_chain(error: BaseException, *labels: str) -> None:
    """The message names every provider of the chain, in order."""
    message = str(error)
    pattern = r"\s*->\s*".join(re.escape(label) for label in labels)
    assert re.search(pattern, message), message


@pytest.mark.parametrize("lifetime", sorted(APP_LIFETIME))
@pytest.mark.parametrize("kind", ["ScopedFactory", "ScopedResource", "ScopedValue"])
def test_singleton_kinds_depending_on_scoped_are_rejected(lifetime: str, kind: str) -> None:
    """Every singleton flavour injected with a scoped provider fails at the first scope()."""
    container = containers.DynamicContainer()
    container.scoped = scoped_target(kind)
    container.cache = APP_LIFETIME[lifetime](Holder, container.scoped)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        container.scope()
    assert_chain(caught.value, f"{lifetime} 'cache'", f"{kind} 'scoped'")


@pytest.mark.parametrize("kind", ["ScopedFactory", "ScopedResource", "ScopedValue"])
def test_upstream_resource_depending_on_scoped_is_rejected(kind: str) -> None:
    """An upstream Resource whose initializer takes a scoped provider fails at scope()."""
    container = containers.DynamicContainer()
    container.scoped = scoped_target(kind)
    container.connection = providers.Resource(connect, container.scoped)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        container.scope()
    assert_chain(caught.value, "Resource 'connection'", f"{kind} 'scoped'")


def test_captive_error_is_raised_before_the_scope_opens() -> None:
    """The check happens in scope() itself: nothing is initialised, no scope becomes current."""
    created: list[object] = []

    def tracked_session():
        created.append("session")
        yield Session()

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(tracked_session)
        cache = providers.Singleton(Holder, session)

    container = Container()
    with pytest.raises(errors.CaptiveDependencyError), container.scope():
        pytest.fail("the scope must not open")
    assert created == []
    from dependency_injector_scoped import get_current_scope

    assert get_current_scope() is None


def test_captive_error_is_a_scope_error_and_upstream_error() -> None:
    """CaptiveDependencyError is catchable as ScopeError and dependency_injector's Error."""
    from dependency_injector.errors import Error

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Repository, session=providers.Object(None))
        cache = providers.Singleton(Holder, users)

    with pytest.raises(errors.ScopeError) as caught:
        Container().scope()
    assert isinstance(caught.value, errors.CaptiveDependencyError)
    assert isinstance(caught.value, Error)


def test_chain_through_factory_is_named() -> None:
    """Singleton -> Factory -> ScopedFactory is rejected and the chain names all three."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        wrapper = providers.Factory(Holder, users)
        cache = providers.Singleton(Holder, wrapper)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(caught.value, "Singleton 'cache'", "Factory 'wrapper'", "ScopedFactory 'users'")


def test_chain_through_callable_is_named() -> None:
    """Singleton -> Callable -> ScopedResource is rejected with the chain."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        wrapped = providers.Callable(Holder, session)
        cache = providers.Singleton(Holder, wrapped)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(
        caught.value, "Singleton 'cache'", "Callable 'wrapped'", "ScopedResource 'session'"
    )


def test_chain_through_list_is_named() -> None:
    """Singleton -> List -> ScopedFactory is rejected with the chain."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        bundle = providers.List(providers.Object(1), users)
        cache = providers.ThreadSafeSingleton(Holder, bundle)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(
        caught.value, "ThreadSafeSingleton 'cache'", "List 'bundle'", "ScopedFactory 'users'"
    )


def test_chain_through_dict_is_named() -> None:
    """Singleton -> Dict -> ScopedValue is rejected with the chain."""

    class Container(containers.DeclarativeContainer):
        request = providers.ScopedValue("request")
        mapping = providers.Dict(request=request)
        cache = providers.Singleton(Holder, mapping)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(caught.value, "Singleton 'cache'", "Dict 'mapping'", "ScopedValue 'request'")


def test_chain_through_several_levels_is_named() -> None:
    """A chain several providers deep names each link in order."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        users = providers.ScopedFactory(Repository, session=session)
        first = providers.Factory(Holder, users)
        second = providers.Callable(Holder, first)
        third = providers.List(second)
        cache = providers.Singleton(Holder, third)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(
        caught.value,
        "Singleton 'cache'",
        "List 'third'",
        "Callable 'second'",
        "Factory 'first'",
        "ScopedFactory 'users'",
    )


def test_provided_attribute_of_scoped_is_captive() -> None:
    """A Singleton injected with `scoped.provided.attr` still reaches the scoped provider."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Repository, session=providers.Factory(Session))
        cache = providers.Singleton(Holder, users.provided.session)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert "Singleton 'cache'" in str(caught.value)
    assert "'users'" in str(caught.value)


class ScopedSub(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    users = providers.ScopedFactory(Repository, session=session)


def test_singleton_on_nested_container_scoped_provider_is_rejected() -> None:
    """A Singleton of the parent injected with a nested container's scoped provider fails."""

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(ScopedSub)
        cache = providers.Singleton(Holder, sub.users)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(caught.value, "Singleton 'cache'", "ScopedFactory 'sub.users'")


def test_singleton_inside_nested_container_is_rejected_from_parent_scope() -> None:
    """A captive Singleton declared inside a nested container fails at the parent's scope()."""

    class Sub(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = providers.Singleton(Holder, session)

    class Container(containers.DeclarativeContainer):
        sub = providers.Container(Sub)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(caught.value, "Singleton 'sub.cache'", "ScopedResource 'sub.session'")


def test_singleton_in_nested_container_on_parent_scoped_via_dependency_is_rejected() -> None:
    """A nested Singleton on a Dependency given the parent's ScopedResource is rejected."""

    class Sub(containers.DeclarativeContainer):
        session = providers.Dependency()
        cache = providers.Singleton(Holder, session)

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        sub = providers.Container(Sub, session=session)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert "Singleton 'sub.cache'" in str(caught.value)
    assert "ScopedResource 'session'" in str(caught.value)


def test_singleton_with_attribute_injection_of_scoped_is_rejected() -> None:
    """A Singleton whose attribute injection is a scoped provider is rejected."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        cache = providers.Singleton(Holder, None)
        cache.add_attributes(users=users)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    assert_chain(caught.value, "Singleton 'cache'", "ScopedFactory 'users'")


async def test_captive_error_in_async_with() -> None:
    """`async with container.scope()` raises CaptiveDependencyError before anything runs."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = providers.ContextLocalSingleton(Holder, session)

    with pytest.raises(errors.CaptiveDependencyError):
        async with Container().scope():
            pytest.fail("the scope must not open")


def test_singleton_on_factory_overridden_by_scoped_is_rejected() -> None:
    """A Singleton on a Factory overridden by a ScopedFactory is rejected."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        wrapper = providers.Factory(Holder, None)
        cache = providers.Singleton(Holder, wrapper)

    container = Container()
    container.wrapper.override(container.users)
    with pytest.raises(errors.CaptiveDependencyError) as caught:
        container.scope()
    assert "Singleton 'cache'" in str(caught.value)
    assert "ScopedFactory 'users'" in str(caught.value)


def test_singleton_holding_the_container_is_allowed() -> None:
    """A Singleton injected with the container itself (providers.Self) is not captive."""

    class Container(containers.DeclarativeContainer):
        __self__ = providers.Self()
        session = providers.ScopedResource(open_session)
        service = providers.Singleton(Holder, __self__)

    container = Container()
    with container.scope():
        assert container.service().dependency is container
        assert container.service().dependency.session() is container.session()


def test_free_scope_on_upstream_container_rejects_captive() -> None:
    """scope() on a plain upstream container runs the same check."""

    class Container(upstream_containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        cache = upstream_providers.Singleton(Holder, users)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        scope(Container())
    assert_chain(caught.value, "Singleton 'cache'", "ScopedFactory 'users'")


def test_delegated_scoped_provider_is_allowed() -> None:
    """A Singleton injected with `scoped.provider` is fine and resolves per scope."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        cache = providers.Singleton(Holder, users.provider)

    container = Container()
    with container.scope():
        first = container.cache().dependency()
        assert first is container.users()
    with container.scope():
        second = container.cache().dependency()
    assert second is not first
    assert container.cache() is container.cache()


def test_delegate_provider_of_scoped_is_allowed() -> None:
    """A Singleton injected with providers.Delegate(scoped) is fine."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = providers.Singleton(Holder, providers.Delegate(session))

    container = Container()
    with container.scope():
        assert container.cache().dependency() is container.session()


def test_transient_factory_on_scoped_is_allowed() -> None:
    """A plain Factory depending on a scoped provider is fine: it is not kept."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        handler = providers.Factory(Holder, session)

    container = Container()
    with container.scope():
        one, two = container.handler(), container.handler()
        assert one is not two
        assert one.dependency is two.dependency is container.session()


def test_scoped_depending_on_singleton_is_allowed() -> None:
    """The other direction, scoped -> Singleton, is fine."""

    class Container(containers.DeclarativeContainer):
        engine = providers.Singleton(object)
        users = providers.ScopedFactory(Repository, session=engine)

    container = Container()
    with container.scope():
        assert container.users().session is container.engine()


def test_overridden_captive_singleton_is_allowed() -> None:
    """A captive Singleton overridden with an Object is not checked: its graph is never called."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = providers.Singleton(Holder, session)

    container = Container()
    fake = Holder(None)
    with container.cache.override(providers.Object(fake)), container.scope():
        assert container.cache() is fake


def test_singleton_overridden_by_captive_singleton_is_rejected() -> None:
    """A harmless Singleton overridden by one that reaches a scoped provider is rejected."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = providers.Singleton(Holder, None)

    container = Container()
    container.cache.override(providers.Singleton(Holder, container.session))
    with pytest.raises(errors.CaptiveDependencyError):
        container.scope()


def test_singleton_overridden_by_factory_on_scoped_is_allowed() -> None:
    """A Singleton overridden by a transient Factory on a scoped provider is fine."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = providers.Singleton(Holder, None)

    container = Container()
    container.cache.override(providers.Factory(Holder, container.session))
    with container.scope():
        assert container.cache().dependency is container.session()


def test_captive_added_after_first_scope_is_rejected_on_next_scope() -> None:
    """Assigning a captive provider to a DynamicContainer re-runs the check at the next scope()."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(open_session)
    with container.scope():
        container.session()

    container.cache = providers.Singleton(Holder, container.session)
    with pytest.raises(errors.CaptiveDependencyError) as caught:
        container.scope()
    assert_chain(caught.value, "Singleton 'cache'", "ScopedResource 'session'")


def test_message_says_what_to_do() -> None:
    """The message suggests a ScopedFactory or injecting `.provider`."""

    class Container(containers.DeclarativeContainer):
        users = providers.ScopedFactory(Session)
        cache = providers.Singleton(Holder, users)

    with pytest.raises(errors.CaptiveDependencyError) as caught:
        Container().scope()
    message = str(caught.value)
    assert "ScopedFactory" in message
    assert "users.provider" in message


def test_captive_brought_in_by_override_providers_is_rejected_on_next_scope() -> None:
    """container.override_providers() after the first scope is re-checked when the next scope opens."""

    class Local(containers.DeclarativeContainer):
        session = providers.ScopedResource(open_session)
        cache = upstream_providers.Singleton(dict)

    c = Local()
    with c.scope():
        pass
    with c.override_providers(cache=upstream_providers.Singleton(Holder, c.session)):
        with pytest.raises(errors.CaptiveDependencyError, match="'session'"):
            c.scope()
    with c.scope():
        assert c.cache() == {}
