"""A misconfigured container (a captive dependency) stops the app from starting."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import httpx
import pytest
from fastapi import FastAPI

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.starlette import ScopeMiddleware

SERVER_EXIT_TIMEOUT = 30

CAPTIVE_APP = """
from fastapi import FastAPI

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.starlette import ScopeMiddleware


class Container(containers.DeclarativeContainer):
    session = providers.ScopedFactory(object)
    # Captive: an app-lifetime Singleton would keep the first request's session.
    repository = providers.Singleton(dict, session=session)


app = FastAPI()
app.add_middleware(ScopeMiddleware, container=Container())


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
"""


def captive_app() -> FastAPI:
    """A FastAPI app whose container has an app-lifetime Singleton depending on a scoped provider."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedFactory(object)
    container.repository = providers.Singleton(dict, session=container.session)
    app = FastAPI(debug=True)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(ScopeMiddleware, container=container)
    return app


@pytest.mark.parametrize("lifespan", ["auto", "on"])
def test_uvicorn_refuses_to_start_an_app_with_a_captive(
    tmp_path: pathlib.Path, lifespan: str
) -> None:
    """``uvicorn`` on 127.0.0.1 exits at start-up, its log naming the captive, in both lifespan modes."""
    pytest.importorskip("uvicorn")
    (tmp_path / "captive_app.py").write_text(textwrap.dedent(CAPTIVE_APP))
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "captive_app:app",
        "--app-dir",
        str(tmp_path),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--lifespan",
        lifespan,
    ]
    # A server that starts anyway serves until the timeout kills it: the test fails.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=SERVER_EXIT_TIMEOUT, check=False
    )
    assert result.returncode != 0
    assert "CaptiveDependencyError" in result.stderr
    assert "Singleton 'repository'" in result.stderr
    assert "Application startup failed. Exiting." in result.stderr


async def test_without_a_lifespan_every_request_fails_naming_the_captive() -> None:
    """Served without a lifespan, the first scope runs the check: a 500 that names the captive."""
    transport = httpx.ASGITransport(captive_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://captive.test") as client:
        responses = [await client.get("/health") for _ in range(2)]
    assert [response.status_code for response in responses] == [500, 500]
    assert all("CaptiveDependencyError" in response.text for response in responses)
    assert all("Singleton 'repository'" in response.text for response in responses)
