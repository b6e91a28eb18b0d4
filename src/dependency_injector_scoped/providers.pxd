# cython: language_level=3
"""Scoped providers: compiled subclasses of dependency-injector's providers."""

from cpython.ref cimport PyObject
from dependency_injector.providers cimport BaseResource, Factory, Provider, ResourceState

from ._scope cimport Creation, Plan, Scope


cdef class Binding:
    cdef readonly object scope_name
    cdef public object name
    cdef public object owner
    cdef public Plan plan
    # The keyword names of the provider's injections, and the injections they are of.
    cdef tuple kwnames
    cdef tuple kwnames_of

    cdef Binding copy(self)


cdef enum:
    CALL_PLACES = 4


cdef class _Call:
    cdef object call
    # The laid-out arguments: up to CALL_PLACES in ``v0``..``v3`` (``size``
    # of them, ``args`` None), more in ``args``.
    cdef tuple args
    cdef object v0, v1, v2, v3
    cdef Py_ssize_t size
    cdef tuple kwnames
    cdef dict kwargs
    # Where the awaitable injections wait (see the class): ``count`` places,
    # the first ``filled`` of them filled.
    cdef Py_ssize_t places[CALL_PLACES]
    cdef list pending
    cdef Py_ssize_t count
    cdef Py_ssize_t filled

    cdef int add_place(self, Py_ssize_t index) except -1
    cdef int add(self, object key) except -1
    cdef int drop(self, object name) except -1
    cdef int keep(self, PyObject** stack, Py_ssize_t size) except -1
    cdef object _item(self, Py_ssize_t index)
    cdef object _awaitable_at(self, Py_ssize_t position)
    cdef object next_pending(self)
    cdef int fill(self, object value) except -1
    cdef int close_rest(self, Py_ssize_t start) except -1
    cdef object invoke(self)


cdef class ScopedFactory(Factory):
    cdef readonly Binding _binding
    # Its last creation had to await: a deferred one goes straight to a coroutine.
    cdef bint _awaited

    cpdef object _provide(self, tuple args, dict kwargs)
    cdef object _produce(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred)


cdef class ScopedResource(BaseResource):
    cdef readonly Binding _binding
    cdef int _kind
    cdef bint _eager
    cdef bint _close_in_thread

    cpdef object _provide(self, tuple args, dict kwargs)
    cdef void set_state(self, ResourceState state)
    cdef ResourceState get_state(self)
    cdef object _produce(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred)
    cdef object _enter(self, Scope scope, object obj, bint* deferred)


cdef class ScopedValue(Provider):
    cdef object _key
    cdef object _scope_name
    cdef public object _name

    cpdef object _provide(self, tuple args, dict kwargs)
    cdef object _lookup(self)
