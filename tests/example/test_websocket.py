"""The example app over WebSockets: one scope, and one session, per connection."""

from __future__ import annotations

from typing import Any

from examples.app import session_key
from fastapi import FastAPI, WebSocket

from dependency_injector_scoped import Scope as DIScope
from dependency_injector_scoped import get_current_scope

from .helpers import WebSocketClient, run_lifespan


def add_session_echo(app: FastAPI, scopes: list[DIScope | None]) -> None:
    """Add ``/ws``: answers each message with the session resolved for it, recording the scope."""
    container = app.state.container

    @app.websocket("/ws")
    async def echo_session(websocket: WebSocket) -> None:
        await websocket.accept()
        async for _ in websocket.iter_text():
            scopes.append(get_current_scope())
            await websocket.send_json({"session": session_key(await container.session())})


async def exchange(app: FastAPI, messages: int) -> list[Any]:
    """Open one connection, send ``messages`` messages and collect the answers."""
    async with WebSocketClient(app, "/ws") as websocket:
        answers = []
        for number in range(messages):
            await websocket.send_text(str(number))
            answers.append((await websocket.receive_json())["session"])
        return answers


async def test_connection_keeps_one_session_for_its_lifetime(app: FastAPI) -> None:
    """Every message of one connection resolves the same scope and session."""
    scopes: list[DIScope | None] = []
    add_session_echo(app, scopes)
    async with run_lifespan(app):
        answers = await exchange(app, 3)
    assert len(set(answers)) == 1
    assert scopes[0] is not None
    assert scopes == [scopes[0]] * 3


async def test_each_connection_gets_its_own_scope(app: FastAPI) -> None:
    """Two connections get two scopes and two sessions."""
    scopes: list[DIScope | None] = []
    add_session_echo(app, scopes)
    async with run_lifespan(app):
        first = await exchange(app, 1)
        second = await exchange(app, 1)
    assert first != second
    assert scopes[0] is not scopes[1]


async def test_scope_closes_when_the_connection_ends(app: FastAPI) -> None:
    """Once the client disconnects and the endpoint returns, the connection's scope is closed."""
    scopes: list[DIScope | None] = []
    add_session_echo(app, scopes)
    async with run_lifespan(app):
        await exchange(app, 1)
        assert scopes[0] is not None
        assert scopes[0].closed
