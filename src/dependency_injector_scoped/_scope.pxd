# cython: language_level=3
"""The scope token and the context variable that holds the innermost open scope."""

cdef enum:
    STATE_NEW = 0
    STATE_OPEN = 1
    STATE_CLOSING = 2
    STATE_CLOSED = 3

cdef enum:
    MODE_EXPLICIT = 0
    MODE_SYNC = 1
    MODE_ASYNC = 2

cdef enum:
    FINALIZE_GENERATOR = 1
    FINALIZE_CONTEXT_MANAGER = 2
    FINALIZE_RESOURCE = 3
    FINALIZE_ASYNC_GENERATOR = 11
    FINALIZE_ASYNC_CONTEXT_MANAGER = 12
    FINALIZE_ASYNC_RESOURCE = 13


cdef class Pending:
    cdef unsigned long owner
    cdef bint is_async
    cdef bint done
    cdef bint retry
    cdef object value
    cdef object error
    cdef list futures
    cdef object task

    cdef void settle(self, object value)
    cdef void fail(self, object error, bint retry)
    cdef void _wake(self)


cdef class AsyncEntry:
    cdef object agen

    cdef object finish(self, object value, bint yielded)
    cdef void fail(self, object error) except *


cdef class Scope:
    cdef readonly object name
    cdef readonly object container
    cdef readonly Scope parent
    cdef dict _values
    cdef dict instances
    cdef tuple _first_finalizer
    cdef object entry_provider
    cdef list finalizers
    cdef int state
    cdef int mode
    cdef int async_finalizers
    cdef Py_ssize_t async_pending
    cdef object _token
    cdef tuple _eager
    cdef object __weakref__

    cdef bint add_finalizer(self, object provider, int kind, object obj) except -1
    cdef object discard(self, object provider, int kind, object obj)
    cdef void _open(self, int mode) except *
    cdef void _begin_close(self) except *
    cdef object _eager_provider(self, tuple entry)
    cdef object _init_entry(self, tuple entry)
    cdef void _init_eager_sync(self) except *
    cdef object _abort(self, object error)
    cdef void _detach(self) except *
    cdef bint _eager_async(self)
    cdef bint _eager_is_async(self, tuple entry) except -1
    cdef list _run_sync_finalizers(self, object exc)
    cdef tuple _pop_finalizer(self)
    cdef void _after_close(self) except *


ctypedef object (*resource_resolver)(object provider, object current)

cdef object current_scope()
cdef void set_resource_resolver(resource_resolver resolver)
cdef object set_current(object scope)
cdef void reset_current(object token) except *
cdef Pending creating_marker()
cdef Pending async_marker()
cdef void notify_settled() except *
cdef void block_while_creating(Scope scope, object provider, object marker) except *
cdef Scope new_scope(object container, object name, object values, tuple eager)
cdef bint is_awaitable(object value) except -1
cdef object generator_error(object provider, bint is_async, bint never_yielded)
cdef object ready(object value)
