import logging
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any, Literal

from dependency_injector.containers import Container
from typing_extensions import Self, disjoint_base

logger: logging.Logger

@disjoint_base
class Scope:
    @property
    def name(self) -> str | None: ...
    @property
    def container(self) -> Container | None: ...
    @property
    def parent(self) -> Scope | None: ...
    def __init__(
        self,
        container: Container | None = None,
        name: str | None = None,
        values: Mapping[Any, Any] | None = None,
    ) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]: ...
    def init(self) -> Awaitable[None] | None: ...
    def shutdown(self, exc: BaseException | None = None) -> Awaitable[None] | None: ...
    @property
    def values(self) -> dict[Any, Any]: ...
    @property
    def is_open(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def __contains__(self, provider: object) -> bool: ...

@disjoint_base
class Pending:
    async def wait_async(self) -> None: ...

def get_current_scope() -> Scope | None: ...
def describe(provider: object) -> str: ...
def open_scope(
    container: Container,
    name: str | None = None,
    *,
    values: Mapping[Any, Any] | None = None,
) -> Scope: ...
