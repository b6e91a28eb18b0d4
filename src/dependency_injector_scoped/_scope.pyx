# cython: language_level=3
"""The scope token (:class:`Scope`) and the context variable behind it.

One context variable holds the innermost open scope of the current context;
each scope links to the scope that was current when it opened.  Tasks,
threads started with a copied context and ``asyncio.gather`` children all see
the same token, so an instance created in a child is visible to its parent
and siblings.
"""

import logging
from asyncio import get_running_loop
from collections.abc import Coroutine as _AbcCoroutine
from contextvars import ContextVar
from threading import Condition
from types import CoroutineType
from warnings import warn

cimport cython
from cpython.dict cimport PyDict_Clear
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF, PyObject

from dependency_injector.providers cimport Provider

from .errors import FinalizerError, ScopeClosedError, ScopeError

logger = logging.getLogger("dependency_injector_scoped")

cdef extern from *:
    """
    /* The ContextVar C API is not part of the limited API: use it only in
       version-specific builds, and call the cached bound methods otherwise. */
    #ifdef Py_LIMITED_API
    #define DIS_CONTEXTVAR_API 0
    #define DIS_ContextVar_Get(var, out) (*(out) = NULL, -1)
    #define DIS_ContextVar_Set(var, value) NULL
    #define DIS_ContextVar_Reset(var, token) (-1)
    #else
    #define DIS_CONTEXTVAR_API 1
    #define DIS_ContextVar_Get(var, out) PyContextVar_Get((var), NULL, (out))
    #define DIS_ContextVar_Set(var, value) PyContextVar_Set((var), (value))
    #define DIS_ContextVar_Reset(var, token) PyContextVar_Reset((var), (token))
    #endif
    #define DIS_TYPE(obj) ((PyObject *)Py_TYPE(obj))
    """
    const bint DIS_CONTEXTVAR_API
    int DIS_ContextVar_Get(object var, PyObject** out) except -1
    object DIS_ContextVar_Set(object var, object value)
    int DIS_ContextVar_Reset(object var, object token) except -1
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    PyObject* DIS_TYPE(object obj)
    PyObject* PyIter_Next(object iterator) except? NULL

_current = ContextVar("dependency_injector_scoped.scope", default=None)
# Without the C API, bound methods cached once are about half the cost of
# ``_current.get()``.
cdef object _current_var = _current
cdef object _current_get = _current.get
cdef object _current_set = _current.set
cdef object _current_reset = _current.reset

cdef tuple _EMPTY = ()
cdef dict _NO_KWARGS = {}  # never mutated by the providers
cdef object _END = object()


cdef object current_scope():
    cdef PyObject* value
    if DIS_CONTEXTVAR_API:
        DIS_ContextVar_Get(_current_var, &value)
        result = <object>value
        Py_DECREF(result)
        return result
    return _current_get()


cdef object set_current(object scope):
    if DIS_CONTEXTVAR_API:
        return DIS_ContextVar_Set(_current_var, scope)
    return _current_set(scope)


cdef void reset_current(object token) except *:
    if DIS_CONTEXTVAR_API:
        DIS_ContextVar_Reset(_current_var, token)
    else:
        _current_reset(token)


def get_current_scope():
    """Return the innermost open :class:`Scope` of this context, or ``None``."""
    return current_scope()


# Awaitable detection mirrors dependency-injector's rule (asyncio futures and
# coroutines).  Answers are cached per type: first in a direct-mapped table
# (which holds a reference to each type it caches), then in a dict, so two hot
# types that share a slot cost a dict lookup, never the full check.
cdef tuple _COROUTINE_TYPES = (CoroutineType, _AbcCoroutine)
cdef PyObject* _type_cache[256]
cdef bint _type_cache_awaitable[256]
cdef dict _awaitable_types = {}


cdef bint is_awaitable(object value) except -1:
    cdef PyObject* kind = DIS_TYPE(value)
    cdef size_t address = <size_t>kind
    cdef size_t slot = ((address >> 4) ^ (address >> 12)) & 255
    if _type_cache[slot] == kind:
        return _type_cache_awaitable[slot]
    return _is_awaitable_type(kind, slot)


cdef bint _is_awaitable_type(PyObject* kind, size_t slot) except -1:
    cls = <object>kind
    known = _awaitable_types.get(cls)
    if known is None:
        known = hasattr(cls, "_asyncio_future_blocking") or issubclass(cls, _COROUTINE_TYPES)
        if len(_awaitable_types) < 4096:
            _awaitable_types[cls] = known
    Py_INCREF(cls)
    Py_XDECREF(_type_cache[slot])
    _type_cache[slot] = kind
    _type_cache_awaitable[slot] = known
    return known


async def _done(value):
    """An awaitable of ``value``; awaiting it never suspends."""
    return value


cdef object ready(object value):
    return _done(value)


cdef class Pending:
    """Marks an instance that is being created, so it is created exactly once.

    Synchronous creations share one marker per thread: a thread that finds
    another thread's marker blocks until the entry changes, then resolves
    again.  Asynchronous creations get a marker of their own, which
    coroutines of the same event loop await.
    """

    cdef void settle(self, object value):
        self.value = value
        self.done = True
        self._wake()

    cdef void fail(self, object error, bint retry):
        self.error = error
        self.retry = retry
        self.done = True
        self._wake()

    cdef void _wake(self):
        if self.futures is not None:
            for future in self.futures:
                if not future.done():
                    future.set_result(None)
            self.futures = None

    async def wait_async(self):
        """Suspend this task until the creator settles the instance."""
        if not self.done:
            future = get_running_loop().create_future()
            if self.futures is None:
                self.futures = []
            self.futures.append(future)
            await future


# One synchronous-creation marker per thread, with the last one cached.
cdef unsigned long _cached_thread = 0
cdef Pending _cached_marker = None
cdef dict _thread_markers = {}

# Threads blocked on another thread's creation wait on one condition; the
# creator notifies only when somebody waits.
cdef object _settled = Condition()
cdef Py_ssize_t _blocked = 0


cdef Pending creating_marker():
    global _cached_thread, _cached_marker
    cdef unsigned long thread = PyThread_get_thread_ident()
    if thread == _cached_thread and _cached_marker is not None:
        return _cached_marker
    marker = _thread_markers.get(thread)
    if marker is None:
        marker = Pending.__new__(Pending)
        (<Pending>marker).owner = thread
        _thread_markers[thread] = marker
    _cached_thread = thread
    _cached_marker = <Pending>marker
    return <Pending>marker


cdef Pending async_marker():
    cdef Pending marker = Pending.__new__(Pending)
    marker.owner = PyThread_get_thread_ident()
    marker.is_async = True
    return marker


cdef void notify_settled() except *:
    if _blocked:
        with _settled:
            _settled.notify_all()


cdef void block_while_creating(Scope scope, object provider, object marker) except *:
    global _blocked
    cdef PyObject* entry
    _blocked += 1
    try:
        with _settled:
            while scope.state == STATE_OPEN:
                entry = PyDict_GetItemWithError(scope.instances, provider)
                if entry is NULL or <object>entry is not marker:
                    break
                # The timeout only bounds a wake-up lost to a closing scope.
                _settled.wait(0.05)
    finally:
        _blocked -= 1


cdef class AsyncEntry:
    """An eager async-generator resource waiting for its first value.

    ``Scope`` awaits ``anext(agen)`` itself while opening, instead of a
    coroutine per resource; the providers module completes the entry.
    """

    cdef object finish(self, object value, bint yielded):
        raise NotImplementedError

    cdef void fail(self, object error) except *:
        raise NotImplementedError


cdef Scope new_scope(object container, object name, object values, tuple eager):
    cdef Scope scope = Scope.__new__(Scope)
    scope.container = container
    scope.name = name
    scope._values = values
    scope.instances = {}
    scope._eager = eager
    return scope


cdef class Scope:
    """A scope token: one instance of every scoped provider, finalised on exit.

    Get one from ``container.scope(name=None, values=None)`` and use it once,
    in one of three ways::

        with container.scope() as scope: ...
        async with container.scope() as scope: ...
        scope = container.scope(); scope.init(); ...; scope.shutdown(exc=None)

    ``init()`` makes the scope current in this context and initialises the
    container's scoped resources bound to it; ``shutdown()`` finalises them in
    reverse order of creation, delivering ``exc`` to each finaliser.  Both
    return an awaitable when any resource involved is asynchronous.
    """

    def __init__(self, container=None, name=None, values=None):
        self.container = container
        self.name = name
        self._values = dict(values) if values else None
        self.instances = {}
        self._eager = _EMPTY

    def __repr__(self):
        state = ("new", "open", "closing", "closed")[self.state]
        name = "" if self.name is None else f" {self.name!r}"
        return f"<Scope{name} {state}, {len(self.instances)} instances>"

    # The three ways to use a scope --------------------------------------

    def __enter__(self):
        self._open(MODE_SYNC)
        self._init_eager_sync()
        return self

    def __exit__(self, exc_type, exc, traceback):
        self._begin_close()
        if self.async_finalizers:
            # Unreachable through the public API: asynchronous resources are
            # refused in synchronous scopes before they are created.
            raise ScopeError(f"{self!r} holds asynchronous resources: use `async with`.")
        errors = self._run_sync_finalizers(exc)
        self._after_close()
        _report(errors, exc)
        return False

    def __aenter__(self):
        # A plain method returning the coroutine that opens the scope and
        # awaits its eager resources: one coroutine, not two.
        return self._init_eager_async(True)

    async def __aexit__(self, exc_type, exc, traceback):
        cdef list errors = None
        if self.state != STATE_CLOSING:  # shutdown() and _abort() detach first
            self._begin_close()
        if not self.async_finalizers:
            errors = self._run_sync_finalizers(exc)
        else:
            while True:
                entry = self._pop_finalizer()
                if entry is None:
                    break
                provider, kind, obj = entry
                try:
                    if kind == FINALIZE_ASYNC_GENERATOR and exc is None:
                        # The common case inline: no coroutine per resource, and
                        # anext() with a default reports the generator's end
                        # without an exception to catch.
                        if await anext(obj, _END) is _END:
                            continue
                        await obj.aclose()
                        raise generator_error(provider, True, False)
                    elif kind > 10:
                        await _finalize_async(provider, kind, obj, exc)
                    else:
                        _finalize_sync(provider, kind, obj, exc)
                except BaseException as error:
                    if error is not exc:
                        if errors is None:
                            errors = []
                        errors.append((provider, error))
        self._after_close()
        _report(errors, exc)
        return False

    def init(self):
        """Open the scope in this context and initialise its eager resources.

        Returns an awaitable when any of those resources is asynchronous.
        """
        self._open(MODE_EXPLICIT)
        if self._eager_async():
            return self._init_eager_async(False)
        self._init_eager_sync()
        return None

    def shutdown(self, exc=None):
        """Finalise and close the scope, delivering ``exc`` to the finalisers.

        Returns an awaitable when any resource involved is asynchronous.
        """
        self._begin_close()
        if self.async_finalizers or self._eager_async():
            return self.__aexit__(None, exc, None)
        errors = self._run_sync_finalizers(exc)
        self._after_close()
        _report(errors, exc)
        return None

    # Introspection --------------------------------------------------------

    @property
    def values(self):
        """The values given when the scope was created (a copy)."""
        return dict(self._values) if self._values else {}

    @property
    def is_open(self):
        """``True`` between ``init()`` and ``shutdown()``."""
        return self.state == STATE_OPEN

    @property
    def closed(self):
        """``True`` once ``shutdown()`` has started."""
        return self.state >= STATE_CLOSING

    def __contains__(self, provider):
        """Whether ``provider`` has a finished instance in this scope."""
        entry = self.instances.get(provider, Pending)
        return entry is not Pending and type(entry) is not Pending

    # Opening --------------------------------------------------------------

    cdef void _open(self, int mode) except *:
        if self.state != STATE_NEW:
            raise ScopeError(
                f"{self!r} was already used; a scope token opens once. "
                "Call container.scope() again for a new scope."
            )
        self.mode = mode
        if mode == MODE_SYNC:
            for entry in self._eager:
                if self._eager_is_async(<tuple>entry):
                    raise ScopeError(
                        f"{_describe(self._eager_provider(<tuple>entry))} is asynchronous "
                        "and cannot be initialised in a synchronous scope: use "
                        "`async with container.scope():`."
                    )
        self.parent = current_scope()
        self._token = set_current(self)
        self.state = STATE_OPEN

    cdef object _eager_provider(self, tuple entry):
        """The provider this scope initialises for a plan entry, or None.

        Entries bind by scope name.  An overridden resource's own initialiser
        never runs; when the overriding provider is itself a scoped resource,
        that one is initialised instead, so overrides made after the plan was
        computed are honoured.
        """
        cdef Provider provider
        scope_name = entry[1]
        if scope_name is not self.name and scope_name != self.name:
            return None
        provider = entry[0]
        if provider._last_overriding is None:
            return provider
        while provider._last_overriding is not None:
            provider = provider._last_overriding
        return provider if isinstance(provider, _resource_type) else None

    cdef object _init_entry(self, tuple entry):
        """Initialise one eager resource of the plan: its value, an awaitable, or None."""
        provider = self._eager_provider(entry)
        if provider is None:
            return None
        # Lets this provider, and no dependency it creates, answer with an AsyncEntry.
        self.entry_provider = provider
        if type(provider) is _resource_type:
            result = _resolve_resource(provider, self)
        else:
            result = (<Provider>provider)._provide(_EMPTY, _NO_KWARGS)
        self.entry_provider = None
        return result

    cdef void _init_eager_sync(self) except *:
        for entry in self._eager:
            try:
                self._init_entry(<tuple>entry)
            except BaseException as error:
                self._abort(error)
                raise

    async def _init_eager_async(self, bint opens):
        """Open the scope if ``opens``, then create and await its eager resources.

        Resources are created one after the other.  An eager async-generator
        resource comes back as an :class:`AsyncEntry` whose first value is
        awaited here: no coroutine of its own.  Returns the scope.
        """
        if opens:
            self._open(MODE_ASYNC)
        for entry in self._eager:
            try:
                result = self._init_entry(<tuple>entry)
                if result is None:
                    continue
                if isinstance(result, AsyncEntry):
                    try:
                        value = await anext((<AsyncEntry>result).agen, _END)
                    except BaseException as error:
                        (<AsyncEntry>result).fail(error)
                        raise
                    (<AsyncEntry>result).finish(value, value is not _END)
                elif is_awaitable(result):
                    await result
            except BaseException as error:
                pending = self._abort(error)
                if pending is not None:
                    await pending
                raise
        return self

    cdef object _abort(self, object error):
        # Initialisation failed part-way: finalise what was created, with the
        # error, and leave the context as it was before init().
        self._detach()
        if self.async_finalizers:
            return self.__aexit__(None, error, None)
        errors = self._run_sync_finalizers(error)
        self._after_close()
        _report(errors, error)
        return None

    # Closing --------------------------------------------------------------

    cdef void _detach(self) except *:
        try:
            reset_current(self._token)
        except ValueError:
            raise ScopeError(
                f"{self!r} must be closed in the context that opened it: a child "
                "task or thread cannot close its parent's scope."
            ) from None
        self.state = STATE_CLOSING

    cdef void _begin_close(self) except *:
        if self.state != STATE_OPEN:
            if self.state == STATE_NEW:
                raise ScopeError(f"{self!r} is not open: call init() or enter it first.")
            raise ScopeError(f"{self!r} is already closed; a scope closes once.")
        if current_scope() is not self:
            raise ScopeError(
                f"{self!r} is not the current scope here: close nested scopes "
                "first, in the context that opened them."
            )
        self._detach()

    cdef bint _eager_async(self):
        for entry in self._eager:
            if self._eager_is_async(<tuple>entry):
                return True
        return False

    cdef bint _eager_is_async(self, tuple entry) except -1:
        """Whether this scope initialises an asynchronous resource for the entry."""
        provider = self._eager_provider(entry)
        if provider is None:
            return False
        if provider is entry[0]:
            return entry[2]  # known when the plan was made
        return provider.is_async

    cdef tuple _pop_finalizer(self):
        """The most recent finaliser not yet run, or None."""
        cdef tuple entry
        if self.finalizers:
            return self.finalizers.pop()
        entry = self._first_finalizer
        self._first_finalizer = None
        return entry

    cdef list _run_sync_finalizers(self, object exc):
        cdef list errors = None
        while True:
            entry = self._pop_finalizer()
            if entry is None:
                return errors
            provider, kind, obj = entry
            try:
                _finalize_sync(provider, kind, obj, exc)
            except BaseException as error:
                if error is not exc:
                    if errors is None:
                        errors = []
                    errors.append((provider, error))

    cdef void _after_close(self) except *:
        self.state = STATE_CLOSED
        if self.async_pending:
            closed = ScopeClosedError(f"{self!r} closed while an instance was being created.")
            for entry in self.instances.values():
                if type(entry) is Pending and not (<Pending>entry).done:
                    (<Pending>entry).fail(closed, False)
        # Drop the instances now: a task that outlives the scope may keep the
        # token alive, and must not keep a request's session with it.
        PyDict_Clear(self.instances)
        notify_settled()

    # Resource bookkeeping, used by the providers ---------------------------

    cdef bint add_finalizer(self, object provider, int kind, object obj) except -1:
        if self.state != STATE_OPEN:
            return False
        # The first finaliser is kept in a field: most scopes hold one resource.
        if self._first_finalizer is None:
            self._first_finalizer = (provider, kind, obj)
        else:
            if self.finalizers is None:
                self.finalizers = []
            self.finalizers.append((provider, kind, obj))
        if kind > 10:
            self.async_finalizers += 1
        return True

    cdef object discard(self, object provider, int kind, object obj):
        """Finalise a resource created after its scope started closing."""
        error = ScopeClosedError(
            f"{_describe(provider)} finished initialising after {self!r} closed; "
            "it was finalised at once."
        )
        if kind > 10:
            return _finalize_async(provider, kind, obj, error)
        _finalize_sync(provider, kind, obj, error)
        return None

    def __dealloc__(self):
        if self.state == STATE_OPEN and self._first_finalizer is not None:
            # svcs-style warning: resources held by a scope nobody closed.
            warn(
                f"A scope was garbage-collected while open: "
                f"{1 + len(self.finalizers or ())} "
                "resource(s) were never finalised. Close scopes with `with`, "
                "`async with` or shutdown().",
                ResourceWarning,
            )


# ScopedResource and a C entry point into it, registered by the providers
# module (which cimports this one).
cdef object _resource_type = None
cdef resource_resolver _resolve_resource = NULL


cdef void set_resource_resolver(resource_resolver resolver):
    global _resolve_resource
    _resolve_resource = resolver


def _register_resource_type(cls):
    global _resource_type
    _resource_type = cls


cdef str _describe(object provider):
    name = getattr(provider, "_name", None)
    if name:
        return f"{type(provider).__name__} {name!r}"
    return repr(provider)


cdef object generator_error(object provider, bint is_async, bint never_yielded):
    """The error for a resource generator that broke the one-``yield`` rule."""
    kind = "async generator" if is_async else "generator"
    broke = "returned without yielding" if never_yielded else "yielded more than once"
    return ScopeError(
        f"The {kind} of {_describe(provider)} {broke}; "
        "a resource generator yields exactly one value."
    )


def describe(provider):
    """Name ``provider`` for an error message: its container attribute where known."""
    return _describe(provider)


cdef void _finalize_sync(object provider, int kind, object obj, object exc) except *:
    cdef PyObject* extra
    if kind == FINALIZE_GENERATOR:
        if exc is None:
            # PyIter_Next reports exhaustion without raising StopIteration.
            extra = PyIter_Next(obj)
            if extra is NULL:
                return
            Py_DECREF(<object>extra)
        else:
            try:
                obj.throw(exc)
            except StopIteration:
                return
        obj.close()
        raise generator_error(provider, False, False)
    elif kind == FINALIZE_CONTEXT_MANAGER:
        if exc is None:
            obj.__exit__(None, None, None)
        else:
            obj.__exit__(type(exc), exc, exc.__traceback__)
    elif kind == FINALIZE_RESOURCE:
        resource = obj.obj
        obj.obj = None
        obj.shutdown(resource, exc)


async def _finalize_async(object provider, int kind, object obj, object exc):
    if kind == FINALIZE_ASYNC_GENERATOR:
        if exc is None:
            if await anext(obj, _END) is _END:
                return
        else:
            try:
                await obj.athrow(exc)
            except StopAsyncIteration:
                return
        await obj.aclose()
        raise generator_error(provider, True, False)
    elif kind == FINALIZE_ASYNC_CONTEXT_MANAGER:
        if exc is None:
            await obj.__aexit__(None, None, None)
        else:
            await obj.__aexit__(type(exc), exc, exc.__traceback__)
    elif kind == FINALIZE_ASYNC_RESOURCE:
        resource = obj.obj
        obj.obj = None
        await obj.shutdown(resource, exc)
    else:
        _finalize_sync(provider, kind, obj, exc)


cdef void _report(list errors, object exc) except *:
    """Raise or attach finaliser errors once every finaliser has run.

    With no exception ending the scope, the errors are raised together as one
    :class:`FinalizerError` (an ``ExceptionGroup``); a cancellation or other
    ``BaseException`` from a finaliser is re-raised as it is.  When an
    exception ends the scope, that exception keeps propagating: each
    finaliser error is logged and added to it as a note.
    """
    if not errors:
        return
    names = ", ".join(_describe(provider) for provider, _ in errors)
    if exc is None:
        for _, error in errors:
            if not isinstance(error, Exception):
                # A cancellation or exit from a finaliser wins; the other
                # errors are logged and noted on it rather than lost.
                _attach(error, [item for item in errors if item[1] is not error])
                raise error
        raise FinalizerError(
            f"{len(errors)} finaliser(s) failed while closing the scope: {names}",
            [error for _, error in errors],
        )
    _attach(exc, errors)


cdef void _attach(object exc, list errors) except *:
    """Log each finaliser error and add it as a note to ``exc``."""
    for provider, error in errors:
        logger.error("Finaliser of %s failed", _describe(provider), exc_info=error)
        note = f"While closing the scope, the finaliser of {_describe(provider)} failed: {error!r}"
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # pragma: no cover - Python 3.10
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]


@cython.binding(True)
def open_scope(container, name=None, *, values=None):
    """Return a new, unopened :class:`Scope` for ``container``.

    Bound as ``container.scope()`` on this package's containers and exported
    as :func:`dependency_injector_scoped.scope` for any dependency-injector
    container.  ``name`` lets providers declared with ``scope="name"`` bind
    to it; ``values`` is a mapping read by ``providers.ScopedValue``.
    The container's scoped graph is checked, and its plan of eager
    resources computed, when its first scope is created.
    """
    plan = getattr(container, "__scoped_plan__", None)
    if plan is None:
        from ._graph import plan_for

        plan = plan_for(container)
    return new_scope(container, name, dict(values) if values else None, <tuple?>plan)
