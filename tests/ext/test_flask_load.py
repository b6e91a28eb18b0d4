"""Flask under load: a threaded WSGI server on 127.0.0.1, PostgreSQL through a pool of five.

Bounded: ``REQUESTS`` requests from ``CONCURRENCY`` keep-alive connections,
each with a client timeout.
"""

from __future__ import annotations

import http.client
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from support import require_module

flask = require_module("flask")
sqlalchemy = require_module("sqlalchemy")

from .flask_support import Store, build_app, serving, sqlalchemy_url  # noqa: E402

REQUESTS = 2000
CONCURRENCY = 50
CLIENT_TIMEOUT = 30.0


def send_batch(base_url: str, first: int, count: int) -> list[tuple[int, Any]]:
    """POST ``count`` names over one keep-alive connection; each reply's status and JSON."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT)
    replies = []
    try:
        for number in range(first, first + count):
            body = json.dumps({"names": [f"name-{number}"], "txid": True})
            connection.request(
                "POST", "/items", body=body, headers={"content-type": "application/json"}
            )
            response = connection.getresponse()
            replies.append((response.status, json.loads(response.read())))
    finally:
        connection.close()
    return replies


@pytest.mark.postgres
def test_every_request_gets_one_session_and_one_transaction(postgres_url: str) -> None:
    """Thousands of concurrent requests: no error, one session and transaction each, no leak."""
    application_name = f"dis-flask-load-{uuid.uuid4().hex[:8]}"
    store = Store(
        sqlalchemy_url(postgres_url),
        pool_size=5,
        max_overflow=0,
        pool_timeout=CLIENT_TIMEOUT,
        connect_args={"application_name": application_name},
    )
    try:
        per_connection = REQUESTS // CONCURRENCY
        with (
            serving(build_app(store)) as base_url,
            ThreadPoolExecutor(CONCURRENCY) as executor,
        ):
            batches = [
                executor.submit(send_batch, base_url, index * per_connection, per_connection)
                for index in range(CONCURRENCY)
            ]
            replies = [reply for batch in batches for reply in batch.result()]

        assert len(replies) == REQUESTS
        assert [status for status, _ in replies if status != 200] == []
        assert len({reply["txid"] for _, reply in replies}) == REQUESTS
        assert len({reply["session"] for _, reply in replies}) == REQUESTS
        assert all(reply["shared"] for _, reply in replies)
        assert len(store.sessions) == REQUESTS
        assert store.commits == REQUESTS and store.rollbacks == []
        assert len(store.stored_names()) == REQUESTS
        assert store.engine.pool.checkedout() == 0
        with store.engine.connect() as connection:
            idle_in_transaction = connection.execute(
                sqlalchemy.text(
                    "select count(*) from pg_stat_activity"
                    " where application_name = :name and state like 'idle in transaction%'"
                ),
                {"name": application_name},
            ).scalar_one()
        assert idle_in_transaction == 0
    finally:
        store.close()
