"""A Celery app whose tasks write to PostgreSQL through one scoped session each.

A worker loads it with ``celery -A ext.celery_support worker``; the settings
come from the environment (``DIS_CELERY_*``) there, and from
:func:`configure` in the test process.  Every session writes a row to
``<table>_log`` when it ends (through a separate autocommit engine), so a test
can count commits and rollbacks, transactions and sessions, also for attempts
that rolled back.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from celery import Celery
from dependency_injector.wiring import Provide, inject
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.celery import ScopedTask

_numbers = itertools.count(1)
_numbers_lock = threading.Lock()


class TaskFailed(Exception):
    """Raised by a task on purpose."""


def open_session(engine: Engine, log_engine: Engine, table: str, task: Any) -> Iterator[Session]:
    """One session per task execution; commits on success, rolls back on any exception."""
    with _numbers_lock:
        number = f"{os.getpid()}-{next(_numbers)}"
    with Session(engine) as session:
        session.info["number"] = number
        try:
            yield session
        except BaseException as error:
            session.rollback()
            _log(log_engine, table, task, number, session, "rollback", type(error).__name__)
            raise
        session.commit()
        _log(log_engine, table, task, number, session, "commit", None)


def _log(
    log_engine: Engine,
    table: str,
    task: Any,
    number: str,
    session: Session,
    outcome: str,
    error: str | None,
) -> None:
    with log_engine.connect() as connection:
        connection.execute(
            text(
                f"insert into {table}_log (task_id, attempt, session, txid, outcome, error) "
                "values (:task_id, :attempt, :session, :txid, :outcome, :error)"
            ),
            {
                "task_id": task.request.id,
                "attempt": task.request.retries,
                "session": number,
                "txid": session.info.get("txid"),
                "outcome": outcome,
                "error": error,
            },
        )


class Recorder:
    """Writes a row in the task's transaction and remembers that transaction's id."""

    def __init__(self, session: Session, table: str, task: Any) -> None:
        self.session = session
        self.table = table
        self.task = task

    def record(self, label: str) -> dict[str, Any]:
        txid = self.session.execute(text("select txid_current()")).scalar_one()
        self.session.info["txid"] = txid
        self.session.execute(
            text(
                f"insert into {self.table} (label, task_id, attempt, session, txid) "
                "values (:label, :task_id, :attempt, :session, :txid)"
            ),
            {
                "label": label,
                "task_id": self.task.request.id,
                "attempt": self.task.request.retries,
                "session": self.session.info["number"],
                "txid": txid,
            },
        )
        return {"txid": txid, "session": self.session.info["number"]}


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    engine = providers.Singleton(
        create_engine, config.database_url, pool_size=5, max_overflow=0, pool_timeout=10
    )
    log_engine = providers.Singleton(
        create_engine,
        config.database_url,
        pool_size=2,
        max_overflow=0,
        pool_timeout=10,
        isolation_level="AUTOCOMMIT",
    )
    task = providers.ScopedValue("task")
    session = providers.ScopedResource(open_session, engine, log_engine, config.table, task)
    recorder = providers.ScopedFactory(Recorder, session=session, table=config.table, task=task)


container = Container()


class Task(ScopedTask):
    container = container


app = Celery("celery_support", task_cls=Task, set_as_current=False)


def configure(
    broker_url: str, database_url: str, table: str, queue: str, *, eager: bool = False
) -> None:
    """Point the app and the container at the services of one test run."""
    app.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        task_default_queue=queue,
        task_always_eager=eager,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    container.config.from_dict({"database_url": database_url, "table": table})


if "DIS_CELERY_BROKER" in os.environ:
    configure(
        os.environ["DIS_CELERY_BROKER"],
        os.environ["DIS_CELERY_DATABASE"],
        os.environ["DIS_CELERY_TABLE"],
        os.environ["DIS_CELERY_QUEUE"],
    )


@app.task
def ping() -> str:
    """Answers once the worker consumes the queue."""
    return "pong"


@app.task
@inject
def record(
    label: str, fail: bool = False, recorder: Recorder = Provide[Container.recorder]
) -> dict[str, Any]:
    """Insert a row; commit, or roll back when ``fail``."""
    result = recorder.record(label)
    if fail:
        raise TaskFailed(f"{label} failed")
    return result


@app.task(bind=True, max_retries=3)
@inject
def flaky(
    self: Task, label: str, failures: int, recorder: Recorder = Provide[Container.recorder]
) -> dict[str, Any]:
    """Insert a row per attempt; retry (rolling that attempt back) until ``failures`` are spent."""
    result = recorder.record(f"{label}-{self.request.retries}")
    if self.request.retries < failures:
        raise self.retry(countdown=0)
    return result


@app.task
def pool_status() -> dict[str, int]:
    """The worker's connection pool, outside any session."""
    pool: Any = container.engine().pool
    return {"checked_out": pool.checkedout(), "size": pool.size()}


container.wire(modules=[sys.modules[__name__]])
