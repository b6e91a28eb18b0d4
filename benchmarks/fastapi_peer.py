"""FastAPI's own ``Depends`` request cycle, solved the way its router does it, without HTTP.

Imported by ``peers.py`` only when FastAPI is installed.  Per request, as
``fastapi.routing`` does: a ``Request`` over a fresh ASGI scope, FastAPI's two exit
stacks in that scope (``yield`` dependencies close on the outer one), then
``solve_dependencies`` on the endpoint's ``Dependant`` and the endpoint called with
the solved values.  Every dependency is ``async def``: FastAPI runs ``def`` ones in its
thread pool, which is not the cost being compared.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

from common import RepoA, RepoB, Service, Session
from fastapi import Depends, Request
from fastapi.dependencies.utils import get_dependant, solve_dependencies


async def get_session() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.close()


async def get_repo_a(session: Annotated[Session, Depends(get_session)]) -> RepoA:
    return RepoA(session)


async def get_repo_b(session: Annotated[Session, Depends(get_session)]) -> RepoB:
    return RepoB(session)


async def get_service(
    a: Annotated[RepoA, Depends(get_repo_a)], b: Annotated[RepoB, Depends(get_repo_b)]
) -> Service:
    return Service(a, b)


async def endpoint(service: Annotated[Service, Depends(get_service)]) -> Service:
    return service


# FastAPI 0.121 added dependency scopes (and the ``scope`` argument); earlier releases
# kept one exit stack under "fastapi_astack".
if "scope" in inspect.signature(get_dependant).parameters:
    DEPENDANT = get_dependant(path="/", call=endpoint, scope="function")
else:  # pragma: no cover - older FastAPI
    DEPENDANT = get_dependant(path="/", call=endpoint)
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "scheme": "http",
    "query_string": b"",
    "headers": [],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "path_params": {},
}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def cycle() -> Service:
    """One request: solve the endpoint's dependencies, call it, close the stacks."""
    scope = dict(SCOPE)
    request = Request(scope, receive)
    async with AsyncExitStack() as request_stack:
        scope["fastapi_inner_astack"] = scope["fastapi_astack"] = request_stack
        async with AsyncExitStack() as function_stack:
            scope["fastapi_function_astack"] = function_stack
            solved = await solve_dependencies(
                request=request,
                dependant=DEPENDANT,
                async_exit_stack=request_stack,
                embed_body_fields=False,
            )
            if solved.errors:
                raise RuntimeError(f"FastAPI could not solve the endpoint: {solved.errors}")
            result = await endpoint(**solved.values)
    return result
