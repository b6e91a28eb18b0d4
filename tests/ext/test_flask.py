"""Flask: one scope per request, committed before the response, rolled back on any error.

Every behaviour runs through Flask's test client and over a real werkzeug
WSGI server on 127.0.0.1, with a sync SQLAlchemy session on a SQLite file
and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import http.client
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from dependency_injector_scoped import containers, get_current_scope, providers
from dependency_injector_scoped.errors import CaptiveDependencyError, FinalizerError
from support import require_module

flask = require_module("flask")
sqlalchemy = require_module("sqlalchemy")
httpx = require_module("httpx")

from dependency_injector_scoped.ext.flask import ErrorResponse, init_app  # noqa: E402

from .flask_support import Store, build_app, serving, sqlalchemy_url  # noqa: E402

CLIENT_TIMEOUT = 10.0


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Store]:
    """A names table on a SQLite file or on PostgreSQL, dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'items.db'}"
    else:
        url = sqlalchemy_url(request.getfixturevalue("postgres_url"))
    store = Store(url)
    try:
        yield store
    finally:
        store.close()


class Client:
    """POSTs and GETs against an app, through Flask's test client or over HTTP."""

    def __init__(self, app: Any, base_url: str | None) -> None:
        self.app = app
        self.base_url = base_url

    def post(self, names: list[str], then: str | None = None) -> tuple[int, Any]:
        """POST ``/items``; the status and the decoded JSON body (or the text)."""
        payload: dict[str, Any] = {"names": names, "then": then}
        if self.base_url is None:
            response = self.app.test_client().post("/items", json=payload)
            status, content_type, body = response.status_code, response.mimetype, response.data
        else:
            with httpx.Client(base_url=self.base_url, timeout=CLIENT_TIMEOUT) as client:
                reply = client.post("/items", json=payload)
            status, content_type, body = (
                reply.status_code,
                reply.headers.get("content-type", ""),
                reply.content,
            )
        if "json" in content_type:
            return status, flask.json.loads(body)
        return status, body.decode()


@pytest.fixture(params=["test-client", "server"])
def connect(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Builds a :class:`Client` for an app; ``server`` serves it with werkzeug on 127.0.0.1."""
    with contextlib.ExitStack() as stack:

        def connect_to(app: Any) -> Client:
            if request.param == "test-client":
                return Client(app, None)
            return Client(app, stack.enter_context(serving(app)))

        yield connect_to


def test_success_commits_one_session_shared_by_two_repositories(store: Store, connect: Any) -> None:
    """A 200 commits; both repositories of a request get its one session, and requests differ."""
    client = connect(build_app(store))
    status, first = client.post(["a", "b"])
    assert status == 200, first
    status, second = client.post(["c"])
    assert status == 200, second
    assert first["shared"] is True and second["shared"] is True
    assert first["session"] != second["session"]
    assert first["path"] == "/items"
    assert store.stored_names() == ["a", "b", "c"]
    assert store.commits == 2 and store.rollbacks == []
    assert len(store.sessions) == 2


def test_abort_409_rolls_back(store: Store, connect: Any) -> None:
    """``abort(409)`` is answered by Flask, yet its status rolls the session back."""
    client = connect(build_app(store))
    status, _ = client.post(["a"], then="abort")
    assert status == 409
    assert store.stored_names() == []
    assert store.commits == 0 and store.rollbacks == [ErrorResponse]


def test_unhandled_exception_rolls_back_with_it(store: Store, connect: Any) -> None:
    """An unhandled error becomes Flask's 500; the finalisers get the error itself."""
    client = connect(build_app(store))
    status, _ = client.post(["a"], then="raise")
    assert status == 500
    assert store.stored_names() == []
    assert store.rollbacks == [RuntimeError]


def test_error_handler_500_rolls_back(store: Store, connect: Any) -> None:
    """An error handler that answers 500 rolls the session back."""
    client = connect(build_app(store))
    status, body = client.post(["a"], then="handled")
    assert (status, body) == (500, "handled")
    assert store.stored_names() == []
    assert store.rollbacks == [ErrorResponse]


def test_failing_commit_answers_500_and_persists_nothing(store: Store, connect: Any) -> None:
    """A commit that breaks a unique constraint never reaches the client as a 200."""
    client = connect(build_app(store))
    assert client.post(["a"])[0] == 200
    status, body = client.post(["b", "a"])
    assert status == 500, body
    assert "Internal Server Error" in str(body) and "session" not in str(body)
    assert store.stored_names() == ["a"]
    assert store.commits == 1


def test_failing_commit_propagates_when_testing(store: Store) -> None:
    """With ``app.testing`` Flask propagates the commit's FinalizerError to the test client."""
    app = build_app(store, testing=True)
    client = app.test_client()
    assert client.post("/items", json={"names": ["a"]}).status_code == 200
    with pytest.raises(FinalizerError) as raised:
        client.post("/items", json={"names": ["a"]})
    assert raised.group_contains(sqlalchemy.exc.IntegrityError)
    assert store.stored_names() == ["a"]


def test_unhandled_exception_propagates_when_testing(store: Store) -> None:
    """A propagated view error still closes the scope with it before reaching the caller."""
    app = build_app(store, testing=True)
    with pytest.raises(RuntimeError, match="the view failed"):
        app.test_client().post("/items", json={"names": ["a"], "then": "raise"})
    assert store.rollbacks == [RuntimeError]
    assert store.stored_names() == []
    assert get_current_scope() is None


def test_teardown_request_sees_the_closed_scope(store: Store, connect: Any) -> None:
    """``teardown_request`` runs after the commit and gets ScopeClosedError, not a new session."""
    app = build_app(store)
    client = connect(app)
    assert client.post(["a"])[0] == 200
    assert client.post(["a"], then="abort")[0] == 409
    assert [error.__name__ for error in app.config["teardown_errors"]] == [
        "ScopeClosedError",
        "ScopeClosedError",
    ]
    assert len(store.sessions) == 2


def test_requests_on_one_server_thread_do_not_nest(tmp_path: pathlib.Path) -> None:
    """A single-threaded server serves request after request, each scope without a parent."""
    store = Store(f"sqlite:///{tmp_path / 'items.db'}")
    try:
        with serving(build_app(store), threaded=False) as base_url:
            client = Client(None, base_url)
            replies = [client.post([name])[1] for name in ("a", "b", "c")]
        assert {reply["thread"] for reply in replies} == {replies[0]["thread"]}
        assert [reply["scope_parent"] for reply in replies] == ["None"] * 3
        assert store.stored_names() == ["a", "b", "c"]
    finally:
        store.close()


def test_streamed_body_commits_once_exhausted(store: Store) -> None:
    """A ``stream_with_context`` body resolves the session while streaming; it commits at the end."""
    app = build_app(store)
    response = app.test_client().get("/stream?names=x,y,z", buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    assert next(chunks) == b"x\n"
    assert store.commits == 0 and store.stored_names() == []
    assert b"".join(chunks) == b"y\nz\n"
    response.close()
    assert store.stored_names() == ["x", "y", "z"]
    assert store.commits == 1 and len(store.sessions) == 1


def test_streamed_body_closed_early_rolls_back(store: Store) -> None:
    """A stream the server closes before its end (the client left) rolls back."""
    app = build_app(store)
    response = app.test_client().get("/stream?names=x,y,z", buffered=False)
    assert next(iter(response.response)) == b"x\n"
    response.close()
    assert store.stored_names() == []
    assert store.rollbacks == [ErrorResponse]


def test_streamed_failing_commit_breaks_the_response(store: Store) -> None:
    """A stream whose commit fails ends without its terminating chunk: never a complete 200."""
    app = build_app(store)
    with serving(app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        assert Client(app, base_url).post(["y"])[0] == 200
        connection = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT)
        try:
            connection.request("GET", "/stream?names=x,y")
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("transfer-encoding") == "chunked"
            with pytest.raises(http.client.IncompleteRead) as raised:
                response.read()
            assert raised.value.partial == b"x\ny\n"
        finally:
            connection.close()
    assert store.stored_names() == ["y"]


def test_streamed_failing_commit_raises_into_the_test_client(store: Store) -> None:
    """Through the test client, the failed close of a stream is raised while reading it."""
    app = build_app(store)
    client = app.test_client()
    assert client.post("/items", json={"names": ["y"]}).status_code == 200
    response = client.get("/stream?names=x,y", buffered=False)
    with pytest.raises(FinalizerError):
        response.get_data()
    response.close()
    assert store.stored_names() == ["y"]


class Clock:
    """An app-lifetime object."""

    def __init__(self, session: object) -> None:
        self.session = session


def test_init_app_checks_captive_dependencies() -> None:
    """``init_app`` refuses a container whose singleton captures the request session."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(object)
    container.clock = providers.Singleton(Clock, container.session)
    app = flask.Flask(__name__)
    with pytest.raises(CaptiveDependencyError):
        init_app(app, container)
    assert "dependency_injector_scoped" not in app.extensions


def test_init_app_twice_is_refused(tmp_path: pathlib.Path) -> None:
    """A second ``init_app`` on one app would nest scopes: it raises."""
    container = containers.DynamicContainer()
    app = flask.Flask(__name__)
    init_app(app, container)
    with pytest.raises(RuntimeError, match="already"):
        init_app(app, container)
