# cython: language_level=3
"""The scope token, its instance table and finalisers, and the context variables behind them.

This module knows nothing of the providers: ``providers`` cimports it and
talks to a :class:`Scope` through a few methods (look up, begin a creation,
settle, abandon, add a closer).
"""

from cpython.ref cimport PyObject


cdef extern from *:
    # A lookup in a scope's instance table, unchecked: NULL is a miss, and a
    # miss is checked for an error once, where a creation begins.
    PyObject* _table_lookup "PyDict_GetItemWithError"(object d, object key) noexcept

cdef enum:
    STATE_NEW = 0
    STATE_OPEN = 1
    STATE_CLOSING = 2
    STATE_CLOSED = 3

cdef enum:
    MODE_SYNC = 1
    MODE_ASYNC = 2

# What a closer does with the object it holds; async kinds are above 10.
cdef enum:
    CLOSE_GENERATOR = 1
    CLOSE_CONTEXT_MANAGER = 2
    CLOSE_RESOURCE = 3
    CLOSE_RESOURCE_WITH_ERROR = 4
    CLOSE_ASYNC_GENERATOR = 11
    CLOSE_ASYNC_CONTEXT_MANAGER = 12
    CLOSE_ASYNC_RESOURCE = 13
    CLOSE_ASYNC_RESOURCE_WITH_ERROR = 14


cdef class Scope
cdef class Closer


cdef class _Closing:
    cdef object exc
    cdef object current
    cdef list errors
    cdef bint detach
    # Awaited (a scope whose one finaliser is an async generator): the scope,
    # the finaliser, and its step or the coroutine that finishes the close.
    cdef Scope scope
    cdef Closer closer
    cdef object step
    cdef bint stepping

    cdef int run(self, Closer closer) except -1
    cdef int failed(self, object provider, object error) except -1


cdef class Ready:
    cdef readonly object value


cdef class Pending:
    # The compiled coroutine that creates the result.
    cdef object coro


cdef class Plan:
    cdef readonly tuple eager
    cdef readonly frozenset members
    cdef readonly str container_label
    cdef readonly Py_ssize_t generation


cdef class Closer:
    cdef readonly object provider
    cdef object obj
    cdef object value
    cdef int kind
    cdef bint in_thread

    cdef int close(self, object exc) except -1
    cdef object discard(self, object error)


cdef class Creation:
    cdef readonly object provider
    cdef Scope scope
    cdef Creation outer
    cdef int depth
    cdef unsigned long thread
    cdef object task
    cdef bint finished
    cdef bint retry
    cdef object error
    cdef list waiters
    cdef Creation _previous
    cdef bint _tracked
    cdef object _creating_token
    cdef object _scope_token
    # For the coroutine that creates a graph depth first (see providers):
    # the creation in it that waits for this one, and this one's pending call.
    cdef Creation parent
    cdef object work

    cdef int release(self) except -1
    cdef int record(self) except -1
    cdef int finish(self, object error, bint retry) except -1
    cdef int wait(self) except -1
    cdef object _cycle(self, object waiter)


cdef class Scope:
    cdef readonly object name
    cdef readonly object container
    cdef readonly Scope parent
    # The nearest enclosing scope that has a name.
    cdef Scope _named_above
    cdef dict _values
    cdef dict _instances
    # The finalisers, in the order registered: one alone in _closer, more in _closers.
    cdef Closer _closer
    cdef list _closers
    cdef Plan _plan
    cdef readonly int state
    cdef readonly int mode
    cdef Py_ssize_t _pending
    cdef object _token
    cdef void* _context
    cdef object __weakref__

    # Inline, so the providers read the table and the plan without a call.
    cdef inline PyObject* get(self, object provider) noexcept:
        """The entry of ``provider`` (instance, ``Ready`` or ``Creation``), or NULL.

        Unchecked: a lookup that raised (a key whose ``__eq__`` raises) also
        gives NULL, and :meth:`begin` raises that error before creating.
        """
        return _table_lookup(self._instances, provider)

    cdef inline Plan plan(self):
        return self._plan

    cdef PyObject* value_of(self, object key)
    cdef Ready keep_ready(self, object provider, object value)
    cdef Scope bound(self, object name)
    cdef Creation begin(self, object provider, bint rebind, bint asynchronous)
    cdef Creation begin_inner(self, object provider, bint rebind, Creation outer)
    cdef int settle(self, Creation creation, object value) except -1
    cdef int abandon(self, Creation creation, object error) except -1
    cdef bint add_closer(self, Closer closer) except -1
    cdef bint _has_closers(self)
    cdef Closer _last_closer(self)
    cdef Closer _pop_closer(self)
    cdef object closed_error(self, object provider)

    cdef int _open(self, int mode) except -1
    cdef object _open_eager(self)
    cdef object _close(self, object exc, bint asynchronous, bint detach)
    cdef int _finish(self, _Closing closing) except -1
    cdef int _detach(self) except -1


cdef object current_scope()
cdef object set_current(object scope)
cdef int reset_current(object token) except -1
cdef Creation current_creation()
cdef Scope new_scope(object container, object name, object values, Plan plan)
cdef Ready ready(object value)
cdef Pending awaiting(object coro)

cdef object next_step(object obj)
cdef Closer new_closer(object provider, int kind, object obj, object value, bint in_thread)
cdef bint is_awaitable(object value) except -1
cdef str describe(object provider)
cdef object generator_error(object provider, bint is_async, bint never_yielded)
