"""Helpers for the Flask tests: a request-scoped SQLAlchemy session, an app, a real WSGI server."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import flask
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
)
from sqlalchemy.orm import Session, registry
from werkzeug.serving import make_server

from dependency_injector_scoped import containers, get_current_scope, providers
from dependency_injector_scoped.errors import ScopeClosedError
from dependency_injector_scoped.ext.flask import init_app

SERVER_TIMEOUT = 10.0


def sqlalchemy_url(postgres_url: str) -> str:
    """The psycopg (v3) SQLAlchemy URL for a ``postgresql://`` URL."""
    return postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)


class Store:
    """A table of unique names on ``url`` and what the request sessions did to it.

    ``sessions`` numbers every session opened (``session.info["number"]``); ``commits`` and
    ``rollbacks`` count how the sessions ended; ``errors`` the exception type
    each rollback received.
    """

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.engine: Engine = create_engine(url, **engine_options)
        self.metadata = MetaData()
        self.table = Table(
            f"flask_items_{uuid.uuid4().hex[:10]}",
            self.metadata,
            Column("id", Integer, primary_key=True),
            Column("name", String(50), unique=True, nullable=False),
        )
        self.metadata.create_all(self.engine)
        self.item_class = type("Item", (Item,), {})
        registry().map_imperatively(self.item_class, self.table)
        self.lock = threading.Lock()
        self.sessions: list[int] = []
        self.commits = 0
        self.rollbacks: list[type[BaseException]] = []

    def open_session(self) -> Iterator[Session]:
        """The request's session: commit when the scope ends cleanly, else roll back."""
        with Session(self.engine) as session:
            with self.lock:
                session.info["number"] = len(self.sessions) + 1
                self.sessions.append(session.info["number"])
            try:
                yield session
            except BaseException as error:
                session.rollback()
                with self.lock:
                    self.rollbacks.append(type(error))
                raise
            session.commit()
            with self.lock:
                self.commits += 1

    def stored_names(self) -> list[str]:
        """The committed names, read through a connection of their own."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(self.table.c.name).order_by(self.table.c.name))
            return [name for (name,) in rows]

    def close(self) -> None:
        """Drop the table and dispose of the engine."""
        self.metadata.drop_all(self.engine)
        self.engine.dispose()


class Item:
    """A row of a store's table (each store maps a subclass to its own table)."""

    def __init__(self, name: str) -> None:
        self.name = name


class ItemRepository:
    """Adds names through the request's session."""

    def __init__(self, session: Session, item_class: type[Item]) -> None:
        self.session = session
        self.item_class = item_class

    def add(self, names: list[str]) -> None:
        """Add ``names``; they are inserted at the commit, so a duplicate breaks the commit."""
        self.session.add_all([self.item_class(name) for name in names])


class AuditRepository:
    """A second repository on the same request session."""

    def __init__(self, session: Session) -> None:
        self.session = session


class HandledError(Exception):
    """Raised by a view; the app's error handler answers it with a 500."""


def build_container(store: Store) -> containers.DynamicContainer:
    """A container with the request session and two repositories on it."""
    container = containers.DynamicContainer()
    container.session = providers.ScopedResource(store.open_session)
    container.items = providers.ScopedFactory(
        ItemRepository, session=container.session, item_class=store.item_class
    )
    container.audit = providers.ScopedFactory(AuditRepository, session=container.session)
    container.request = providers.ScopedValue("request")
    return container


def build_app(store: Store, *, testing: bool = False) -> flask.Flask:
    """A Flask app whose views add names through the request-scoped session.

    ``POST /items`` takes ``{"names": [...], "then": ...}``; ``then`` is
    ``"abort"`` (409), ``"raise"`` (an unhandled error), ``"handled"`` (an
    error handler's 500) or absent (200).  ``GET /stream?names=a,b`` adds one
    name per streamed chunk.  ``teardown_errors`` records what resolving the
    session in ``teardown_request`` raised.
    """
    container = build_container(store)
    app = flask.Flask(__name__)
    app.testing = testing
    teardown_errors: list[type[BaseException]] = []
    app.config["teardown_errors"] = teardown_errors

    @app.post("/items")
    def add_items() -> dict[str, Any]:
        payload = flask.request.get_json()
        items: ItemRepository = container.items()
        audit: AuditRepository = container.audit()
        items.add(payload["names"])
        scope = get_current_scope()
        assert scope is not None
        outcome = payload.get("then")
        if outcome == "abort":
            flask.abort(409)
        if outcome == "raise":
            raise RuntimeError("the view failed")
        if outcome == "handled":
            raise HandledError("the view failed, handled")
        transaction_id = None
        if payload.get("txid"):
            transaction_id = items.session.execute(select(func.txid_current())).scalar_one()
        return {
            "session": items.session.info["number"],
            "shared": items.session is audit.session,
            "path": container.request().path,
            "scope_parent": repr(scope.parent),
            "thread": threading.get_ident(),
            "txid": transaction_id,
        }

    @app.get("/stream")
    def stream() -> flask.Response:
        names = flask.request.args["names"].split(",")

        @flask.stream_with_context
        def chunks() -> Iterator[str]:
            for name in names:
                container.items().add([name])
                yield f"{name}\n"

        return flask.Response(chunks(), mimetype="text/plain")

    @app.errorhandler(HandledError)
    def handled(error: HandledError) -> tuple[str, int]:
        return "handled", 500

    @app.teardown_request
    def teardown(error: BaseException | None) -> None:
        if flask.request.path == "/items":
            try:
                container.session()
            except ScopeClosedError as closed:
                teardown_errors.append(type(closed))

    init_app(app, container)
    return app


@contextlib.contextmanager
def serving(app: flask.Flask, *, threaded: bool = True) -> Iterator[str]:
    """Serve ``app`` with werkzeug's WSGI server in a thread on a free 127.0.0.1 port.

    Yields the base URL; the server is shut down, within ``SERVER_TIMEOUT``,
    when the block exits.
    """
    server = make_server("127.0.0.1", 0, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(SERVER_TIMEOUT)
        server.server_close()
    assert not thread.is_alive(), "the WSGI server did not stop in time"
