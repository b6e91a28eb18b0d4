# cython: language_level=3
"""Scoped providers: compiled subclasses of dependency-injector's providers."""

from dependency_injector.providers cimport BaseResource, Factory, Provider, ResourceState

from ._scope cimport Scope


cdef class ScopedFactory(Factory):
    cdef object _scope_name
    cdef public object _name

    cpdef object _provide(self, tuple args, dict kwargs)
    cdef object _resolve(self, object current, tuple args, dict kwargs)
    cdef object _build(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred)


cdef class ScopedResource(BaseResource):
    cdef object _scope_name
    cdef public object _name
    cdef int _kind

    cpdef object _provide(self, tuple args, dict kwargs)
    cdef void set_state(self, ResourceState state)
    cdef ResourceState get_state(self)
    cdef object _resolve(self, object current, tuple args, dict kwargs)
    cdef object _build(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred)
    cdef object _enter_sync(self, Scope scope, object obj, int kind, bint* deferred)


cdef class ScopedValue(Provider):
    cdef object _key
    cdef object _scope_name
    cdef public object _name

    cpdef object _provide(self, tuple args, dict kwargs)
    cdef object _lookup(self)
