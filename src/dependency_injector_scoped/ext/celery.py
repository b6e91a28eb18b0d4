"""Celery: one scope per task execution.

:class:`ScopedTask` is a Celery task base class; name the container on a
subclass and make it the app's task class (or pass it as ``base=`` to the
tasks that need it)::

    class Task(ScopedTask):
        container = container

    app = Celery("proj", task_cls=Task)

    @app.task(bind=True)
    @inject
    def charge(self, order_id: int, orders: Orders = Provide[Container.orders]) -> None:
        orders.charge(order_id)

Which scope
    Every execution of a task runs in ``with scope(container, scope_name,
    values={task_key: task})``, opened by the task's ``__call__``.  Celery
    calls it for every execution: in a worker (any pool: prefork, solo,
    threads), in ``task_always_eager`` mode and through ``task.apply()``,
    and when the task is called as a function, so all of them behave the
    same.  The running task is given to the scope as ``values={"task":
    task}`` (``providers.ScopedValue("task")``; ``task.request`` is the
    current request: id, retries, headers).  Scoped resources stay lazy: an
    execution creates only what it resolves.  The scope is synchronous, like
    Celery's tasks; each thread of a ``threads`` pool runs its tasks in scopes
    of its own.

When it commits
    The scope closes cleanly, so a session resource commits, only when the
    task's body returns.  This is before Celery stores the result or sends
    ``task_success``: a client that sees ``SUCCESS`` sees committed data.
    If the commit fails (a finaliser raised), the task fails with
    :class:`~dependency_injector_scoped.errors.FinalizerError` instead, and its
    state is ``FAILURE``.

When it rolls back
    When the body raises, whatever the exception, the scope closes with it:
    every finaliser receives it (rollback) and Celery then handles it as
    usual (``FAILURE``, ``on_failure``, ``task_failure``).  This includes
    :class:`celery.exceptions.Retry`, raised by ``self.retry()`` and by
    ``autoretry_for``: an attempt that is retried did not succeed, so it rolls
    back, and the next attempt runs in a fresh scope with a new session.  The
    retry message is published by ``self.retry()`` before the attempt's
    scope closes, so with ``countdown=0`` the next attempt can start while the
    previous one is still rolling back (in a separate transaction).  In eager
    mode the retried attempt runs after the previous attempt's scope closed.
    A task ended with ``Ignore`` or ``Reject`` rolls back too.

Nested calls
    A task that calls another scoped task as a function runs it in a nested
    scope of its own: the inner task gets its own session and transaction,
    committed when the inner call returns.  ``.delay()`` and
    ``.apply_async()`` send a message instead; that execution has its own
    scope wherever it runs.

At start-up
    When a task class is bound to its app (``app.finalize()``, which a worker
    runs while starting), its container's scoped graph is checked
    (:func:`dependency_injector_scoped.check_scopes`): a captive dependency
    raises :class:`~dependency_injector_scoped.errors.CaptiveDependencyError`
    there, so the worker does not start, instead of failing every task.
"""

from __future__ import annotations

from typing import Any, ClassVar

import celery  # type: ignore[import-untyped]

from dependency_injector_scoped import check_scopes
from dependency_injector_scoped import scope as open_scope

__all__ = ["ScopedTask"]


class ScopedTask(celery.Task):  # type: ignore[misc]
    """A Celery task base class whose every execution runs in a scope of ``container``.

    Subclass it and set ``container`` (any dependency-injector container);
    ``scope_name`` names the scopes (providers declared with ``scope="task"``
    bind to ``scope_name = "task"``); the running task is given to each scope
    under ``task_key``.  See the module documentation for when the scope
    commits and rolls back.
    """

    #: The container whose scopes the task's executions run in.
    container: ClassVar[Any] = None
    #: The name of the scopes, or ``None`` for unnamed scopes.
    scope_name: ClassVar[str | None] = None
    #: The key of the running task in the scope's values.
    task_key: ClassVar[str] = "task"

    @classmethod
    def on_bound(cls, app: celery.Celery) -> None:
        """Check the container's scoped graph when the task is bound to ``app``."""
        super().on_bound(app)
        if cls.container is not None:
            check_scopes(cls.container)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task's body in a fresh scope, closed with the body's exception, if any."""
        container = self.container
        if container is None:
            raise TypeError(
                f"{type(self).__name__} has no container: subclass ScopedTask and set "
                "`container = <your container>` on the subclass"
            )
        with open_scope(container, self.scope_name, values={self.task_key: self}):
            return super().__call__(*args, **kwargs)
