"""The async contract: a result's type depends on the provider, never on timing."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from dependency_injector import resources

from dependency_injector_scoped import containers, errors, providers

TIMEOUT = 5


class Session:
    """The instance the async resources of these tests provide."""


class Repo:
    def __init__(self, session: object) -> None:
        self.session = session


class Service:
    def __init__(self, repo: object) -> None:
        self.repo = repo


async def async_generator():
    await asyncio.sleep(0)
    yield Session()


async def coroutine_function():
    await asyncio.sleep(0)
    return Session()


class AsyncSessionResource(resources.AsyncResource):
    async def init(self):
        await asyncio.sleep(0)
        return Session()

    async def shutdown(self, resource):
        pass


class AsyncManager:
    async def __aenter__(self):
        await asyncio.sleep(0)
        return Session()

    async def __aexit__(self, *exc_info):
        return None


def returns_async_context_manager():
    """A plain callable: that its result is async is only known at the first resolution."""
    return AsyncManager()


ASYNC_KINDS = {
    "async_generator": async_generator,
    "coroutine_function": coroutine_function,
    "async_resource": AsyncSessionResource,
    "async_context_manager_from_callable": returns_async_context_manager,
}


def shop(kind: str = "async_generator") -> containers.DynamicContainer:
    """A container whose `session` is an async ScopedResource of ``kind`` and `repo` needs it."""
    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(ASYNC_KINDS[kind])
    c.repo = providers.ScopedFactory(Repo, session=c.session)
    c.service = providers.Factory(Service, repo=c.repo)
    return c


# Async resources: an awaitable at every call ---------------------------------------


@pytest.mark.parametrize("kind", sorted(ASYNC_KINDS))
async def test_first_call_of_an_async_resource_is_awaitable(kind):
    """The first call of an async ScopedResource in `async with` returns an awaitable of its instance."""
    c = shop(kind)
    async with c.scope():
        pending = c.session()
        assert inspect.isawaitable(pending)
        assert isinstance(await asyncio.wait_for(pending, TIMEOUT), Session)


@pytest.mark.parametrize("kind", sorted(ASYNC_KINDS))
async def test_call_of_an_existing_async_resource_is_still_awaitable(kind):
    """Once its instance exists, an async ScopedResource still returns an awaitable of that instance."""
    c = shop(kind)
    async with c.scope():
        created = await asyncio.wait_for(c.session(), TIMEOUT)
        again = c.session()
        assert inspect.isawaitable(again)
        assert await again is created


async def test_gathered_children_all_get_awaitables_of_one_instance():
    """Ten gathered children each calling the repo get an awaitable, and all the same repo."""
    c = shop()
    awaitable: list[bool] = []

    async def child():
        result = c.repo()
        awaitable.append(inspect.isawaitable(result))
        return await result

    async with c.scope():
        repos = await asyncio.wait_for(asyncio.gather(*(child() for _ in range(10))), TIMEOUT)
    assert awaitable == [True] * 10
    assert all(repo is repos[0] for repo in repos)


# Async mode of ScopedFactory ---------------------------------------------------------


async def test_factory_on_an_async_resource_returns_an_awaitable_at_every_call():
    """A ScopedFactory depending on an async resource returns an awaitable before and after creation."""
    c = shop()
    async with c.scope():
        first = c.repo()
        assert inspect.isawaitable(first)
        created = await asyncio.wait_for(first, TIMEOUT)
        later = [c.repo(), c.repo()]
        assert all(inspect.isawaitable(result) for result in later)
        assert [await result for result in later] == [created, created]


async def test_factory_on_an_async_resource_reports_async_mode_once_a_scope_opens():
    """is_async_mode_enabled() is True for a ScopedFactory that needs an await, before its first call."""
    c = shop()
    async with c.scope():
        assert c.repo.is_async_mode_enabled()
        await asyncio.wait_for(c.repo(), TIMEOUT)
        assert c.repo.is_async_mode_enabled()


def test_check_scopes_decides_async_mode_without_a_scope():
    """container.check_scopes() decides the async mode from the graph, before any scope opens."""
    c = shop()
    c.check_scopes()
    assert c.repo.is_async_mode_enabled()


async def test_factory_with_a_coroutine_function_is_in_async_mode():
    """A ScopedFactory whose `provides` is a coroutine function returns an awaitable at every call."""
    c = containers.DynamicContainer()
    c.session = providers.ScopedFactory(coroutine_function)
    async with c.scope():
        first = c.session()
        assert inspect.isawaitable(first)
        created = await asyncio.wait_for(first, TIMEOUT)
        second = c.session()
        assert inspect.isawaitable(second)
        assert await second is created
        assert c.session.is_async_mode_enabled()


async def test_sync_factory_returns_the_instance_and_is_not_in_async_mode():
    """A ScopedFactory with sync dependencies returns its instance directly, even in `async with`."""
    c = containers.DynamicContainer()
    c.session = providers.ScopedFactory(Session)
    c.repo = providers.ScopedFactory(Repo, session=c.session)
    async with c.scope():
        repo = c.repo()
        assert isinstance(repo, Repo)
        assert c.repo() is repo
        assert not c.repo.is_async_mode_enabled()


# Overrides keep the result type -------------------------------------------------------


async def test_async_resource_overridden_by_a_sync_provider_stays_awaitable():
    """An async ScopedResource overridden by providers.Object still returns an awaitable."""
    c = shop()
    fake = Session()
    with c.session.override(providers.Object(fake)):
        async with c.scope():
            result = c.session()
            assert inspect.isawaitable(result)
            assert await result is fake


async def test_sync_resource_overridden_by_an_async_one_makes_its_dependents_async():
    """override_providers with an async resource puts the dependants in async mode next scope."""

    def open_sync_session():
        yield Session()

    c = containers.DynamicContainer()
    c.session = providers.ScopedResource(open_sync_session)
    c.repo = providers.ScopedFactory(Repo, session=c.session)
    async with c.scope():
        assert isinstance(c.repo(), Repo)
    with c.override_providers(session=providers.ScopedResource(async_generator)):
        async with c.scope():
            result = c.repo()
            assert inspect.isawaitable(result)
            repo = await asyncio.wait_for(result, TIMEOUT)
            assert isinstance(repo.session, Session)


# An existing instance: the awaitable completes without suspending -------------------


@pytest.mark.parametrize("provider", ["session", "repo"])
async def test_awaiting_an_existing_instance_does_not_suspend(provider):
    """Awaiting a call whose instance exists finishes at its first step: no yield to the loop."""
    c = shop()
    async with c.scope():
        created = await asyncio.wait_for(getattr(c, provider)(), TIMEOUT)
        steps = getattr(c, provider)().__await__()
        with pytest.raises(StopIteration) as finished:
            steps.send(None)
        assert finished.value.value is created


# .async_() -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["sync", "async"])
async def test_async_method_is_awaitable_before_and_after_creation(provider):
    """provider.async_() returns an awaitable of the one instance, sync or async provider alike."""
    c = shop()
    c.plain = providers.ScopedFactory(Session)
    target = c.plain if provider == "sync" else c.session
    async with c.scope():
        first = target.async_()
        assert inspect.isawaitable(first)
        created = await asyncio.wait_for(first, TIMEOUT)
        second = target.async_()
        assert inspect.isawaitable(second)
        assert await second is created


# Sync scopes ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [*sorted(ASYNC_KINDS), "repo"])
def test_async_provider_in_a_sync_scope_says_to_use_async_with(provider):
    """In `with`, resolving an async provider raises ScopeError naming it and saying `async with`."""
    c = shop() if provider == "repo" else shop(provider)
    name = "repo" if provider == "repo" else "session"
    with c.scope() as s:
        with pytest.raises(errors.ScopeError, match="async with") as caught:
            getattr(c, name)()
        assert f"'{name}'" in str(caught.value)
        assert getattr(c, name) not in s


# Upstream providers depending on scoped ones ---------------------------------------------


async def test_upstream_factory_gets_the_instance_in_successive_scopes():
    """An upstream Factory on an async ScopedFactory receives the repo itself, scope after scope."""
    c = shop()
    repos = []
    for _ in range(2):
        async with c.scope():
            service = await asyncio.wait_for(c.service(), TIMEOUT)
            assert isinstance(service.repo, Repo)
            assert service.repo is await c.repo()
            repos.append(service.repo)
    assert repos[0] is not repos[1]


# After the scope closed --------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["resource", "factory"])
async def test_awaiting_a_creation_after_its_scope_closed_raises_scope_closed(provider):
    """A creation awaited only after its scope closed raises ScopeClosedError, not KeyError."""
    c = containers.DynamicContainer()
    if provider == "resource":
        c.item = providers.ScopedResource(async_generator)
    else:
        c.item = providers.ScopedFactory(coroutine_function)
    async with c.scope():
        pending = c.item()
    with pytest.raises(errors.ScopeClosedError):
        await asyncio.wait_for(pending, TIMEOUT)


# The awaitables handed out ------------------------------------------------------------------


async def test_a_call_that_must_create_returns_a_coroutine_asyncio_accepts():
    """The awaitable of a creation passes asyncio.iscoroutine, so tasks and gather take it."""
    c = shop()
    async with c.scope():
        pending = c.repo()
        assert asyncio.iscoroutine(pending)
        assert inspect.isawaitable(pending)
        task = asyncio.ensure_future(pending)
        assert "_create_async" in repr(task)  # the task names the creation
        repo = await asyncio.wait_for(task, TIMEOUT)
        assert repo is await c.repo()


async def test_a_creation_closed_before_it_starts_marks_nothing():
    """Closing the awaitable of a creation nobody awaited leaves the scope as it was."""
    c = shop()
    async with c.scope() as scope:
        c.repo().close()
        assert c.repo not in scope
        assert c.session not in scope
        assert isinstance(await asyncio.wait_for(c.repo(), TIMEOUT), Repo)


async def test_an_error_thrown_into_a_creation_abandons_it():
    """throw() reaches the initializer where it waits; the marks are released and it can be retried."""
    c = shop()
    async with c.scope() as scope:
        steps = c.repo()
        assert steps.send(None) is None  # the session's generator waits in asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="stop"):
            steps.throw(RuntimeError("stop"))
        assert c.repo not in scope
        assert c.session not in scope
        assert isinstance(await asyncio.wait_for(c.repo(), TIMEOUT), Repo)


@pytest.mark.parametrize("value", [(1, 2), ValueError("a value"), None, 0])
async def test_an_instance_of_any_type_comes_back_from_await_as_it_is(value):
    """Tuples, exceptions, None and falsy instances come back from every await unchanged."""

    async def resource():
        yield value

    c = containers.DynamicContainer()
    c.item = providers.ScopedResource(resource)
    async with c.scope():
        for _ in range(3):
            assert await c.item() is value


async def test_a_kept_stop_iteration_keeps_its_value():
    """A StopIteration a caller holds on to is never reused for another await's result."""
    c = containers.DynamicContainer()
    c.a = providers.ScopedResource(async_generator)
    c.b = providers.ScopedResource(async_generator)
    async with c.scope():
        a, b = await c.a(), await c.b()
        kept = []
        for provider in (c.a, c.b, c.a, c.b):
            try:
                next(provider().__await__())
            except StopIteration as finished:
                kept.append(finished)
            await c.b()  # awaits in between finish through the same C path
        assert [stop.value for stop in kept] == [a, b, a, b]
        assert [stop.args for stop in kept] == [(a,), (b,), (a,), (b,)]
