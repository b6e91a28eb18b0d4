# Every upstream provider is re-exported; ``Callable`` and ``Coroutine`` are
# upstream's providers here, so the typing constructs get private names.
import weakref as _weakref
from collections.abc import AsyncIterator as _AsyncIterator
from collections.abc import Callable as _Callable
from collections.abc import Coroutine as _Coroutine
from collections.abc import Hashable as _Hashable
from collections.abc import Iterator as _Iterator
from contextlib import AbstractAsyncContextManager as _AsyncContextManager
from contextlib import AbstractContextManager as _ContextManager
from typing import Any, overload

from dependency_injector import resources
from dependency_injector.providers import *  # noqa: F403
from dependency_injector.providers import BaseResource as BaseResource
from dependency_injector.providers import Factory as Factory
from dependency_injector.providers import Provider as Provider
from typing_extensions import Self as _Self
from typing_extensions import TypeVar, disjoint_base

_T = TypeVar("_T")
_V = TypeVar("_V", default=Any)

@disjoint_base
class Binding:
    name: str | None
    owner: Any
    plan: Any
    def __new__(cls, scope_name: str | None = None) -> _Self: ...
    @property
    def scope_name(self) -> str | None: ...

@disjoint_base
class ScopedFactory(Factory[_T]):
    _name: str | None
    @property
    def _binding(self) -> Binding | None: ...
    def __init__(
        self,
        provides: _Callable[..., _T] | str | None = None,
        *args: Any,
        scope: str | None = None,
        **kwargs: Any,
    ) -> None: ...
    @property
    def scope_name(self) -> str | None: ...

@disjoint_base
class ScopedResource(BaseResource[_T]):
    _name: str | None
    @property
    def _binding(self) -> Binding | None: ...
    @overload
    def __init__(
        self,
        provides: type[resources.Resource[_T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: type[resources.AsyncResource[_T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: _Callable[..., _Iterator[_T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: _Callable[..., _AsyncIterator[_T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: _Callable[..., _ContextManager[_T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: _Callable[..., _AsyncContextManager[_T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: _Callable[..., _Coroutine[Any, Any, _T]],
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        provides: _Callable[..., _T] | str | None = None,
        *args: Any,
        scope: str | None = None,
        eager: bool = False,
        close_in_thread: bool = True,
        **kwargs: Any,
    ) -> None: ...
    @property
    def scope_name(self) -> str | None: ...
    @property
    def is_async(self) -> bool: ...
    @property
    def eager(self) -> bool: ...
    @property
    def close_in_thread(self) -> bool: ...

@disjoint_base
class ScopedValue(Provider[_V]):
    _name: str | None
    @overload
    def __init__(self: ScopedValue[_T], key: type[_T], *, scope: str | None = None) -> None: ...
    @overload
    def __init__(self, key: _Hashable = None, *, scope: str | None = None) -> None: ...
    @property
    def key(self) -> _Hashable: ...
    @property
    def scope_name(self) -> str | None: ...

def _owner_ref(container: object) -> _weakref.ref[Any] | None: ...
