"""``ScopedTask``: one scope, one SQLAlchemy session, per Celery task execution.

The same tasks (``celery_support``) run in ``task_always_eager`` mode in this
process and through a real Celery worker subprocess (threads pool) on Redis,
against PostgreSQL; every session logs how it ended to ``<table>_log``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dependency_injector_scoped import containers, errors, providers
from support import require_module

celery = require_module("celery")
redis = require_module("redis")
from celery.result import AsyncResult, EagerResult  # noqa: E402

from dependency_injector_scoped.ext.celery import ScopedTask  # noqa: E402

from . import celery_support  # noqa: E402

pytestmark = pytest.mark.postgres

TESTS_DIRECTORY = pathlib.Path(__file__).resolve().parents[1]
RESULT_TIMEOUT = 30
WORKER_START_TIMEOUT = 60
WORKER_STOP_TIMEOUT = 15
BULK_TASKS = 500

Result = AsyncResult | EagerResult


def sqlalchemy_url(postgres_url: str) -> str:
    scheme, rest = postgres_url.split("://", 1)
    assert scheme in ("postgresql", "postgres"), postgres_url
    return f"postgresql+psycopg://{rest}"


@pytest.fixture(scope="module")
def table(postgres_url: str) -> Iterator[str]:
    """The task table (labels unique, checked at commit) and its session log, dropped afterwards."""
    name = f"dis_celery_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            f"create table {name} (label text not null unique deferrable initially deferred, "
            "task_id text not null, attempt integer not null, session text not null, "
            "txid bigint not null)"
        )
        connection.execute(
            f"create table {name}_log (task_id text not null, attempt integer not null, "
            "session text not null, txid bigint, outcome text not null, error text)"
        )
    try:
        yield name
    finally:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"drop table if exists {name}")
            connection.execute(f"drop table if exists {name}_log")


@pytest.fixture(scope="module")
def queue(redis_url: str) -> Iterator[str]:
    """A queue name of this test run; its Redis keys are deleted afterwards."""
    name = f"dis-celery-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(name, f"_kombu.binding.{name}")
    finally:
        client.close()


@pytest.fixture(scope="module")
def configured(redis_url: str, postgres_url: str, table: str, queue: str) -> Iterator[None]:
    """The app (as the client side) and the container pointed at this run's services."""
    celery_support.configure(redis_url, sqlalchemy_url(postgres_url), table, queue)
    try:
        yield
    finally:
        for engine in (celery_support.container.engine, celery_support.container.log_engine):
            engine().dispose()
            engine.reset()
        celery_support.app.close()


@pytest.fixture(scope="module")
def worker(
    configured: None,
    redis_url: str,
    postgres_url: str,
    table: str,
    queue: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process (threads pool, 8 threads) consuming this run's queue."""
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIRECTORY), os.environ.get("PYTHONPATH", "")]),
        "DIS_CELERY_BROKER": redis_url,
        "DIS_CELERY_DATABASE": sqlalchemy_url(postgres_url),
        "DIS_CELERY_TABLE": table,
        "DIS_CELERY_QUEUE": queue,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "ext.celery_support",
        "worker",
        "--pool=threads",
        "--concurrency=8",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=WARNING",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=TESTS_DIRECTORY, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        try:
            answer = celery_support.ping.apply_async().get(timeout=WORKER_START_TIMEOUT)
        except Exception:
            pytest.fail(f"the worker did not start:\n{log_path.read_text(errors='replace')}")
        assert answer == "pong"
        yield process
    finally:
        _stop(process)
    output = log_path.read_text(errors="replace")
    assert process.returncode == 0, output
    # The worker logs the tasks that failed on purpose, and nothing else.
    unexpected = [
        line
        for line in output.splitlines()
        if "raised unexpected" in line and not ("TaskFailed" in line or "FinalizerError" in line)
    ]
    assert unexpected == [], output


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL if the worker is still there."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=WORKER_STOP_TIMEOUT)


@pytest.fixture(params=["eager", "worker"])
def mode(request: pytest.FixtureRequest, configured: None) -> Iterator[str]:
    """Runs a test with ``task_always_eager`` and again through the worker."""
    if request.param == "worker":
        request.getfixturevalue("worker")
        yield "worker"
        return
    celery_support.app.conf.task_always_eager = True
    try:
        yield "eager"
    finally:
        celery_support.app.conf.task_always_eager = False


def wait(result: Result) -> Result:
    """Wait for a task's outcome, without raising its error."""
    result.get(timeout=RESULT_TIMEOUT, propagate=False)
    return result


def query(postgres_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as connection:
        return connection.execute(sql, params).fetchall()


def log_of(postgres_url: str, table: str, task_id: str) -> list[tuple[Any, ...]]:
    """``(attempt, session, txid, outcome, error)`` of every session a task used."""
    return query(
        postgres_url,
        f"select attempt, session, txid, outcome, error from {table}_log "
        "where task_id = %s order by attempt",
        task_id,
    )


def rows_of(postgres_url: str, table: str, task_id: str) -> list[tuple[Any, ...]]:
    """``(label, attempt, session, txid)`` committed by a task."""
    return query(
        postgres_url,
        f"select label, attempt, session, txid from {table} where task_id = %s order by attempt",
        task_id,
    )


def test_success_commits_its_session(mode: str, postgres_url: str, table: str) -> None:
    """A task that returns commits its one session, before its SUCCESS is visible."""
    label = f"ok-{uuid.uuid4().hex}"
    result = wait(celery_support.record.apply_async((label,)))
    assert result.state == "SUCCESS", result.result
    [(attempt, session, txid, outcome, error)] = log_of(postgres_url, table, result.id)
    assert (attempt, outcome, error) == (0, "commit", None)
    assert rows_of(postgres_url, table, result.id) == [(label, 0, session, txid)]
    assert result.result == {"txid": txid, "session": session}


def test_failure_rolls_back_its_session(mode: str, postgres_url: str, table: str) -> None:
    """A task that raises rolls back with that exception, and its state is FAILURE."""
    label = f"fail-{uuid.uuid4().hex}"
    result = wait(celery_support.record.apply_async((label,), {"fail": True}))
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TaskFailed"
    [(attempt, _session, txid, outcome, error)] = log_of(postgres_url, table, result.id)
    assert (attempt, outcome, error) == (0, "rollback", "TaskFailed")
    assert txid is not None
    assert rows_of(postgres_url, table, result.id) == []


def test_retry_rolls_back_the_attempt_and_gets_a_fresh_session(
    mode: str, postgres_url: str, table: str
) -> None:
    """Each retried attempt rolls back (Retry); the next one gets a new session and transaction."""
    label = f"flaky-{uuid.uuid4().hex}"
    result = wait(celery_support.flaky.apply_async((label, 2)))
    assert result.state == "SUCCESS", result.result
    log = log_of(postgres_url, table, result.id)
    assert [(attempt, outcome, error) for attempt, _s, _t, outcome, error in log] == [
        (0, "rollback", "Retry"),
        (1, "rollback", "Retry"),
        (2, "commit", None),
    ]
    assert len({session for _a, session, _t, _o, _e in log}) == 3
    assert len({txid for _a, _s, txid, _o, _e in log}) == 3
    _attempt, session, txid, _outcome, _error = log[-1]
    assert rows_of(postgres_url, table, result.id) == [(f"{label}-2", 2, session, txid)]


def test_failing_commit_fails_the_task(mode: str, postgres_url: str, table: str) -> None:
    """A commit that breaks a constraint fails the task with FinalizerError; nothing is kept."""
    label = f"twice-{uuid.uuid4().hex}"
    first = wait(celery_support.record.apply_async((label,)))
    assert first.state == "SUCCESS", first.result
    second = wait(celery_support.record.apply_async((label,)))
    assert second.state == "FAILURE"
    assert "FinalizerError" in (second.traceback or ""), second.traceback
    assert "UniqueViolation" in (second.traceback or ""), second.traceback
    assert rows_of(postgres_url, table, second.id) == []
    assert log_of(postgres_url, table, second.id) == []
    assert [row[0] for row in rows_of(postgres_url, table, first.id)] == [label]


def test_many_tasks_through_the_worker_use_one_session_each(
    worker: subprocess.Popen[bytes], postgres_url: str, table: str
) -> None:
    """500 tasks on a pool of 5 (8 worker threads): one session and transaction each, no leak."""
    prefix = f"bulk-{uuid.uuid4().hex}"
    results = [
        celery_support.record.apply_async((f"{prefix}-{index}",), {"fail": index % 10 == 0})
        for index in range(BULK_TASKS)
    ]
    deadline = time.monotonic() + 120
    for result in results:
        result.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
    states = [result.state for result in results]
    failed = [result for result in results if result.state == "FAILURE"]
    assert states.count("SUCCESS") == BULK_TASKS - BULK_TASKS // 10
    assert {type(result.result).__name__ for result in failed} == {"TaskFailed"}
    assert len(failed) == BULK_TASKS // 10

    task_ids = [result.id for result in results]
    log = query(
        postgres_url,
        f"select task_id, session, txid, outcome, error from {table}_log where task_id = any(%s)",
        task_ids,
    )
    assert len(log) == BULK_TASKS
    assert len({task_id for task_id, *_ in log}) == BULK_TASKS
    assert len({session for _id, session, *_ in log}) == BULK_TASKS
    assert len({txid for _id, _s, txid, _o, _e in log}) == BULK_TASKS
    outcomes = sorted((outcome, error or "") for *_, outcome, error in log)
    assert outcomes.count(("commit", "")) == BULK_TASKS - BULK_TASKS // 10
    assert outcomes.count(("rollback", "TaskFailed")) == BULK_TASKS // 10

    rows = query(
        postgres_url, f"select session, txid from {table} where label like %s", f"{prefix}-%"
    )
    assert len(rows) == BULK_TASKS - BULK_TASKS // 10
    committed = {(session, txid) for _id, session, txid, outcome, _e in log if outcome == "commit"}
    assert set(rows) == committed

    status = wait(celery_support.pool_status.apply_async()).result
    assert status == {"checked_out": 0, "size": 5}
    assert worker.poll() is None


# Behaviour of the task class itself, on apps of their own (eager, in memory).


def eager_app(task_class: type[ScopedTask]) -> Any:
    app = celery.Celery("dis_celery_eager", task_cls=task_class, set_as_current=False)
    app.conf.update(broker_url="memory://", task_always_eager=True, task_store_eager_result=False)
    return app


def test_task_called_as_a_function_runs_in_a_scope() -> None:
    """Calling the task directly runs its body in a fresh scope, given the task as a value."""
    ended: list[str | None] = []

    def open_job_session(task: Any) -> Iterator[str]:
        yield f"session of {task.name}"
        ended.append(None)

    class Container(containers.DeclarativeContainer):
        task = providers.ScopedValue("task")
        session = providers.ScopedResource(open_job_session, task)

    container = Container()

    class Task(ScopedTask):
        pass

    Task.container = container
    app = eager_app(Task)

    @app.task(name="job")
    def job() -> str:
        return container.session()

    try:
        assert job() == "session of job"
        assert job.apply().get(timeout=5) == "session of job"
        assert ended == [None, None]
        with pytest.raises(errors.NoActiveScopeError):
            container.session()
    finally:
        app.close()


def test_task_class_without_container_refuses_to_run() -> None:
    """A ScopedTask subclass without a container raises TypeError saying what to set."""
    app = eager_app(ScopedTask)

    @app.task(name="orphan")
    def orphan() -> None:
        """Never runs."""

    try:
        with pytest.raises(TypeError, match="container"):
            orphan()
    finally:
        app.close()


def test_captive_dependency_fails_when_the_task_is_bound() -> None:
    """A captive dependency raises CaptiveDependencyError when the app binds the task (start-up)."""

    class Container(containers.DeclarativeContainer):
        session = providers.ScopedFactory(object)
        captive = providers.Singleton(list, session)

    class Task(ScopedTask):
        container = Container()

    app = eager_app(Task)

    @app.task(name="captured")
    def captured() -> None:
        """Never runs."""

    try:
        with pytest.raises(errors.CaptiveDependencyError):
            app.finalize(auto=True)
            _ = captured.name
    finally:
        app.close()


def test_named_scope_serves_task_scoped_providers() -> None:
    """``scope_name`` names each execution's scope, so ``scope="task"`` providers bind to it."""

    class Container(containers.DeclarativeContainer):
        per_task = providers.ScopedFactory(object, scope="task")

    container = Container()

    class Task(ScopedTask):
        scope_name = "task"

    Task.container = container
    app = eager_app(Task)

    @app.task(name="named")
    def named() -> bool:
        return container.per_task() is container.per_task()

    try:
        assert named() is True
    finally:
        app.close()
