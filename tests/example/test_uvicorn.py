"""The example app behind a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import pathlib

import httpx
import pytest
from fastapi import FastAPI

from .helpers import serving, stored_rows, stored_titles

pytest.importorskip("uvicorn")

CONCURRENT_REQUESTS = 20


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


async def test_real_server_answers_500_for_a_failing_commit_behind_the_timing_middleware(
    app: FastAPI, database_path: pathlib.Path
) -> None:
    """Over real HTTP, through the app's @app.middleware("http"): a duplicate title answers 500 and commits nothing."""
    with serving(app) as base_url:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0, limits=limits) as client:
            created = await client.post("/notes", json={"title": "twice"})
            # The header proves the response passed through the BaseHTTPMiddleware.
            assert "x-process-time" in created.headers
            duplicate = await client.post("/notes", json={"title": "twice"})
    assert created.status_code == 201
    assert duplicate.status_code == 500
    assert duplicate.text == "Internal Server Error"
    assert stored_titles(database_path) == ["twice"]
    assert len(stored_rows(database_path, "events")) == 1
