"""How a scoped provider calls what it provides: the same results and errors as calling it by hand.

A plain class (object's ``__new__``, a Python ``__init__``) is instantiated
without ``type.__call__``; everything else is called as it is.  These tests
hold both ways to the behaviour of a direct call.
"""

from __future__ import annotations

import abc
import dataclasses
import gc
import sys
import weakref
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from typing_extensions import Self

from dependency_injector_scoped import containers, providers, scope


class Session:
    pass


def open_session():
    yield Session()


class Keywords:
    def __init__(self, session: Session, *, label: str = "default", **extra: Any) -> None:
        self.session = session
        self.label = label
        self.extra = extra


class Positional:
    def __init__(self, session: Session, *rest: Any) -> None:
        self.session = session
        self.rest = rest


class ReturnsValue:
    def __init__(self, session: Session) -> None:
        self.session = session
        return 1  # type: ignore[misc]


MADE: list[weakref.ref[Fails]] = []


class Fails:
    def __init__(self, session: Session) -> None:
        MADE.append(weakref.ref(self))
        raise LookupError("no such row")


class OwnNew:
    made_by: str

    def __new__(cls, session: Session) -> Self:
        instance = super().__new__(cls)
        instance.made_by = "__new__"
        return instance

    def __init__(self, session: Session) -> None:
        self.session = session


class Meta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return ("made by the metaclass", args, kwargs)


class WithMeta(metaclass=Meta):
    pass


class Abstract(abc.ABC):
    @abc.abstractmethod
    def run(self) -> None: ...


class NoInit:
    pass


class FromDict(dict):
    pass


@dataclasses.dataclass
class Record:
    session: Session
    label: str = "record"


class Slotted:
    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session


def build(session: Session, *, label: str) -> dict[str, Any]:
    return {"session": session, "label": label}


class Calls(containers.DeclarativeContainer):
    session = providers.ScopedResource(open_session)
    keywords = providers.ScopedFactory(Keywords, session=session, label="kw", colour="red")
    positional = providers.ScopedFactory(Positional, session, 1, 2)
    returns_value = providers.ScopedFactory(ReturnsValue, session)
    fails = providers.ScopedFactory(Fails, session=session)
    own_new = providers.ScopedFactory(OwnNew, session=session)
    with_meta = providers.ScopedFactory(WithMeta, session, label="meta")
    abstract = providers.ScopedFactory(Abstract)
    no_init_with_args = providers.ScopedFactory(NoInit, session)
    from_dict = providers.ScopedFactory(FromDict, a=1)
    record = providers.ScopedFactory(Record, session=session)
    slotted = providers.ScopedFactory(Slotted, session)
    function = providers.ScopedFactory(build, session=session, label="fn")


def test_keyword_and_positional_injections_reach_the_class():
    c = Calls()
    with c.scope():
        session = c.session()
        keywords = c.keywords()
        assert (keywords.session, keywords.label, keywords.extra) == (
            session,
            "kw",
            {"colour": "red"},
        )
        positional = c.positional()
        assert (positional.session, positional.rest) == (session, (1, 2))
        assert c.record() == Record(session)
        assert c.slotted().session is session
        assert c.function() == {"session": session, "label": "fn"}


def test_an_init_that_returns_a_value_is_refused_as_by_a_direct_call():
    c = Calls()
    with pytest.raises(TypeError) as direct:
        ReturnsValue(Session())
    with c.scope(), pytest.raises(TypeError) as scoped:
        c.returns_value()
    assert str(scoped.value) == str(direct.value)


def test_an_init_that_raises_propagates_and_frees_the_half_made_instance():
    c = Calls()
    MADE.clear()
    with c.scope():
        with pytest.raises(LookupError, match="no such row"):
            c.fails()
        # The failure is not cached: the next resolution tries again.
        with pytest.raises(LookupError):
            c.fails()
    gc.collect()
    assert len(MADE) == 2
    assert all(ref() is None for ref in MADE)


def test_classes_with_their_own_new_or_metaclass_are_called_as_they_are():
    c = Calls()
    with c.scope():
        own_new = c.own_new()
        assert own_new.made_by == "__new__"
        assert own_new.session is c.session()
        assert c.with_meta() == ("made by the metaclass", (c.session(),), {"label": "meta"})
        assert c.from_dict() == {"a": 1}


def test_errors_of_a_direct_call_are_the_errors_of_the_provider():
    c = Calls()
    with pytest.raises(TypeError) as direct_abstract:
        Abstract()  # type: ignore[abstract]
    with pytest.raises(TypeError) as direct_args:
        NoInit(Session())  # type: ignore[call-arg]
    with c.scope():
        with pytest.raises(TypeError) as abstract:
            c.abstract()
        with pytest.raises(TypeError) as args:
            c.no_init_with_args()
    assert str(abstract.value) == str(direct_abstract.value)
    assert str(args.value) == str(direct_args.value)


def test_keyword_injections_changed_after_a_call_are_used_from_the_next_scope():
    item = providers.ScopedFactory(build, session=providers.Object("s"), label="first")
    container = containers.DynamicContainer()
    with scope(container):
        assert item() == {"session": "s", "label": "first"}
    item.add_kwargs(label="second")
    with scope(container):
        assert item() == {"session": "s", "label": "second"}
    item.set_kwargs(session=providers.Object("t"), label="third")
    with scope(container):
        assert item() == {"session": "t", "label": "third"}


def test_call_arguments_come_after_injected_ones_and_keywords_override():
    item = providers.ScopedFactory(Positional, providers.Object("injected"))
    named = providers.ScopedFactory(build, session=providers.Object("s"), label="injected")
    container = containers.DynamicContainer()
    with scope(container):
        made = item("given")
        assert (made.session, made.rest) == ("injected", ("given",))
    with scope(container):
        assert named(label="given") == {"session": "s", "label": "given"}


def test_many_arguments_are_passed_whole():
    names = {f"k{index}": providers.Object(index) for index in range(40)}
    item = providers.ScopedFactory(Keywords, providers.Object("s"), *range(30), **names)
    with scope(containers.DynamicContainer()):
        # Keywords takes one positional argument: the rest is refused as by a direct call.
        with pytest.raises(TypeError) as error:
            item()
    with pytest.raises(TypeError) as direct:
        Keywords("s", *range(30), **{f"k{index}": index for index in range(40)})  # type: ignore[misc]
    assert str(error.value) == str(direct.value)
    wide = providers.ScopedFactory(Keywords, providers.Object("s"), **names)
    with scope(containers.DynamicContainer()):
        assert wide().extra == {f"k{index}": index for index in range(40)}


async def test_awaited_keyword_injections_fill_their_places():
    async def async_session():
        yield Session()

    class Async(containers.DeclarativeContainer):
        session = providers.ScopedResource(async_session)
        keywords = providers.ScopedFactory(Keywords, session=session, label="kw", colour="red")
        positional = providers.ScopedFactory(Positional, session, 1, 2)

    c = Async()
    async with c.scope():
        keywords = await c.keywords()
        session = await c.session()
        assert (keywords.session, keywords.label, keywords.extra) == (
            session,
            "kw",
            {"colour": "red"},
        )
        positional = await c.positional()
        assert (positional.session, positional.rest) == (session, (1, 2))


def test_a_name_injected_twice_takes_the_last_value_as_upstream_does():
    from dependency_injector import providers as upstream

    ours = providers.ScopedFactory(build, session=providers.Object("s"), label="first")
    theirs = upstream.Factory(build, session=providers.Object("s"), label="first")
    for provider in (ours, theirs):
        provider.add_kwargs(label="second")
    with scope(containers.DynamicContainer()):
        assert ours() == theirs() == {"session": "s", "label": "second"}


async def test_an_awaitable_injection_replaced_by_a_later_one_is_closed_not_awaited():
    started = []

    async def first() -> str:
        started.append("first")
        return "first"

    async def second() -> str:
        started.append("second")
        return "second"

    item = providers.ScopedFactory(
        build, session=providers.Object("s"), label=providers.Coroutine(first)
    )
    item.add_kwargs(label=providers.Coroutine(second))
    async with scope(containers.DynamicContainer()):
        assert await item() == {"session": "s", "label": "second"}
    assert started == ["second"]


@pytest.mark.parametrize("count", [14, 15, 16, 17])
def test_arguments_around_the_stack_limit_arrive_in_order(count):
    """Up to 15 arguments are laid out on the C stack, more in a tuple: both arrive as given."""
    positional = count // 2
    keywords = count - positional - 2  # "s" first, one argument of the call
    item = providers.ScopedFactory(
        build_all,
        providers.Object("s"),
        *[providers.Object(index) for index in range(positional)],
        **{f"k{index}": providers.Object(index) for index in range(keywords)},
    )
    with scope(containers.DynamicContainer()):
        assert item("given") == (
            ("s", *range(positional), "given"),
            {f"k{index}": index for index in range(keywords)},
        )


def build_all(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


class Held:
    """A value whose references are counted: a failed call must not keep it."""


def test_a_failing_injection_releases_the_values_already_laid_out():
    """An injection that raises after others were resolved leaks none of their values."""
    held = Held()

    def broken() -> None:
        raise LookupError("no such setting")

    item = providers.ScopedFactory(
        build_all, providers.Object(held), providers.Callable(broken), label=held
    )
    before = sys.getrefcount(held)
    with scope(containers.DynamicContainer()):
        for _ in range(100):
            with pytest.raises(LookupError, match="no such setting"):
                item()
    gc.collect()
    assert sys.getrefcount(held) == before


def test_a_call_that_fails_releases_its_arguments():
    """A provided callable that raises leaves no reference to the arguments it was given."""
    held = Held()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise LookupError("refused")

    item = providers.ScopedFactory(refuse, providers.Object(held), value=providers.Object(held))
    before = sys.getrefcount(held)
    with scope(containers.DynamicContainer()):
        for _ in range(100):
            with pytest.raises(LookupError, match="refused"):
                item()
    gc.collect()
    assert sys.getrefcount(held) == before


@pytest.mark.parametrize("count", [1, 3, 4, 5, 7])
async def test_calls_that_wait_keep_every_argument_in_its_place(count):
    """A call waiting for awaited injections (kept inline up to four, else in a tuple) gets them in order."""

    async def async_session():
        yield Session()

    session = providers.ScopedResource(async_session)
    mixed = [session if index % 2 == 0 else providers.Object(index) for index in range(count)]
    item = providers.ScopedFactory(
        build_all,
        *mixed[: count // 2 + 1],
        **{f"k{index}": injection for index, injection in enumerate(mixed[count // 2 + 1 :])},
    )
    async with scope(containers.DynamicContainer()):
        made = await item()
        instance = await session()
    expected = [instance if index % 2 == 0 else index for index in range(count)]
    assert made == (
        tuple(expected[: count // 2 + 1]),
        {f"k{index}": value for index, value in enumerate(expected[count // 2 + 1 :])},
    )
