"""The example app behind a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from .helpers import stored_titles

uvicorn = pytest.importorskip("uvicorn")

STARTUP_TIMEOUT = 10.0
CONCURRENT_REQUESTS = 20


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yield its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not stop in time"


async def test_real_server_commits_before_answering_and_rolls_back_failures(
    app: FastAPI, database_path: pathlib.Path
) -> None:
    """Over real HTTP: creates commit before 201, failures answer 500 and roll back, 20 concurrent creates commit."""
    with serving(app) as base_url:
        # A fresh connection per request: uvicorn closes a connection whose
        # app raised after responding (the 500s below), racing a reused one.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0, limits=limits) as client:
            created = await client.post("/notes", json={"title": "first"})
            assert created.status_code == 201
            assert stored_titles(database_path) == ["first"]

            assert (await client.post("/notes", json={"title": "first"})).status_code == 500
            assert (await client.post("/notes/fail", json={"title": "failed"})).status_code == 500
            assert (
                await client.post("/notes/reject", json={"title": "rejected"})
            ).status_code == 400

            titles = [f"concurrent {number:02}" for number in range(CONCURRENT_REQUESTS)]
            responses = await asyncio.gather(
                *(client.post("/notes", json={"title": title}) for title in titles)
            )
            assert [response.status_code for response in responses] == [201] * CONCURRENT_REQUESTS

            listed = await client.get("/notes")
            assert listed.status_code == 200
            assert [note["title"] for note in listed.json()] == [*titles, "first"]
    assert stored_titles(database_path) == [*titles, "first"]
