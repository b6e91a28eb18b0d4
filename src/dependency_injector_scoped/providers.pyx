# cython: language_level=3
"""Providers: every public provider of dependency-injector, plus scoped ones.

:class:`ScopedFactory` and :class:`ScopedResource` give one instance per
open scope (see :class:`dependency_injector_scoped.Scope`);
:class:`ScopedValue` reads a value given when a scope was opened.
"""

import inspect
import sys
from asyncio import CancelledError as _CancelledError
from asyncio import current_task as _current_task

import dependency_injector.providers as _upstream
from dependency_injector import resources as _resources
from dependency_injector.providers import _resolve_string_import

from cpython.dict cimport PyDict_SetItem
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from cpython.tuple cimport PyTuple_New, PyTuple_SetItem

from dependency_injector.providers cimport (
    BaseResource,
    Callable,
    Factory,
    Injection,
    NamedInjection,
    Provider,
    ResourceState,
    __get_name as _get_name,
    __get_value as _get_value,
    __get_value_kwargs as _get_value_kwargs,
    __separate_prefixed_kwargs as _separate_prefixed_kwargs,
)

from ._scope cimport (
    AsyncEntry,
    FINALIZE_ASYNC_CONTEXT_MANAGER,
    FINALIZE_ASYNC_GENERATOR,
    FINALIZE_ASYNC_RESOURCE,
    FINALIZE_CONTEXT_MANAGER,
    FINALIZE_GENERATOR,
    FINALIZE_RESOURCE,
    MODE_SYNC,
    STATE_OPEN,
    Pending,
    Scope,
    async_marker,
    block_while_creating,
    creating_marker,
    current_scope,
    generator_error,
    is_awaitable,
    notify_settled,
    ready,
    reset_current,
    set_current,
    set_resource_resolver,
)

from ._scope import _register_resource_type, describe
from .errors import MissingScopeValueError, NoActiveScopeError, ScopeClosedError, ScopeError

if sys.version_info >= (3, 11):
    from inspect import iscoroutinefunction
else:  # pragma: no cover - Python 3.10
    from asyncio import iscoroutinefunction

cdef extern from *:
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    object PyObject_Call(object callable, object args, PyObject* kwargs)
    PyObject* PyIter_Next(object iterator) except? NULL

# Upstream's async-mode constant; providers whose async mode the user
# enabled always return awaitables.
cdef int ASYNC_MODE_ENABLED = 1

# What a ScopedResource initializer is, decided once in set_provides().
cdef enum:
    KIND_UNSET = 0
    KIND_CALLABLE = 1
    KIND_GENERATOR = 2
    KIND_RESOURCE = 3
    KIND_RESOURCE_WITH_ERROR = 4
    KIND_ASYNC_GENERATOR = 11
    KIND_COROUTINE = 12
    KIND_ASYNC_RESOURCE = 13
    KIND_ASYNC_RESOURCE_WITH_ERROR = 14


# Finding the scope ---------------------------------------------------------

cdef inline Scope _scope_for(object provider, object name, object current):
    """Return the open scope ``provider`` binds to, seen from ``current``, or raise."""
    cdef Scope scope
    if current is not None:
        scope = <Scope>current
        if name is None:
            if scope.state == STATE_OPEN:
                return scope
        else:
            while scope is not None:
                if scope.name is name or scope.name == name:
                    if scope.state == STATE_OPEN:
                        return scope
                    break
                scope = scope.parent
    _raise_no_scope(provider, name, current)


cdef void _raise_no_scope(object provider, object name, object current) except *:
    cdef Scope scope = <Scope>current if current is not None else None
    what = describe(provider)
    if name is None:
        if scope is not None:
            raise ScopeClosedError(
                f"{what} was resolved through {scope!r}, which is closed: this task, "
                "thread or background job outlived its scope. Resolve what it needs "
                "before the scope ends, or open a new scope for it."
            )
        raise NoActiveScopeError(
            f"{what} was resolved outside any open scope. Resolve it inside "
            "`with container.scope():` / `async with container.scope():` (or the "
            "framework integration's scope middleware)."
        )
    while scope is not None:
        if scope.name == name:
            raise ScopeClosedError(
                f"{what} binds to scope {name!r}, which is closed: this task, thread "
                "or background job outlived it. Open a new scope for it."
            )
        scope = scope.parent
    raise NoActiveScopeError(
        f"{what} binds to scope {name!r}, but no scope named {name!r} is open here. "
        f"Resolve it inside `with container.scope({name!r}):`."
    )


# Resolving injections ------------------------------------------------------

cdef tuple _NO_ARGS = ()
cdef dict _NO_KWARGS = {}  # never mutated: _invoke builds its own dict


cdef inline object _inject(Injection injection, object current):
    """The value of one injection.

    A dependency that is itself a scoped provider of this module, not
    overridden, is resolved through its C-level ``_provide``: the same result
    as calling it, without building call arguments.
    """
    cdef object dependency
    if injection._call:
        dependency = injection._value
        if (
            (type(dependency) is ScopedFactory or type(dependency) is ScopedResource)
            and (<Provider>dependency)._last_overriding is None
            and (<Provider>dependency)._async_mode != ASYNC_MODE_ENABLED
        ):
            # Same context, same innermost scope: no context-variable lookup.
            if type(dependency) is ScopedFactory:
                return (<ScopedFactory>dependency)._resolve(current, _NO_ARGS, _NO_KWARGS)
            return (<ScopedResource>dependency)._resolve(current, _NO_ARGS, _NO_KWARGS)
    return _get_value(injection)


cdef object _invoke(
        object call,
        tuple args,
        tuple inj_args,
        int inj_args_len,
        dict kwargs,
        tuple inj_kwargs,
        int inj_kwargs_len,
        object current,
        object sync_provider,
        bint* deferred,
):
    """Call ``call`` with its injections, or return a coroutine that will.

    Injections that resolve to awaitables are awaited one after the other in
    a single coroutine (no tasks, no gather, no callbacks); ``deferred`` is
    set when that coroutine is returned instead of the call's result.  In a
    synchronous scope (``sync_provider`` given) awaitable injections are
    closed and refused with an error naming that provider.
    """
    cdef Py_ssize_t index
    cdef Py_ssize_t extra
    cdef list awaited = None
    cdef object value
    cdef object name
    cdef NamedInjection injection
    cdef dict prefixed

    if inj_args_len:
        extra = len(args)
        positional = PyTuple_New(inj_args_len + extra)
        for index in range(inj_args_len):
            value = _inject(<Injection>inj_args[index], current)
            if is_awaitable(value):
                if awaited is None:
                    awaited = []
                awaited += (None, index, value)
            Py_INCREF(value)
            PyTuple_SetItem(positional, index, value)
        for index in range(extra):
            value = args[index]
            Py_INCREF(value)
            PyTuple_SetItem(positional, inj_args_len + index, value)
        args = <tuple>positional

    if inj_kwargs_len:
        if not kwargs:
            kwargs = {}
            for index in range(inj_kwargs_len):
                injection = <NamedInjection>inj_kwargs[index]
                value = _inject(injection, current)
                name = _get_name(injection)
                kwargs[name] = value
                if is_awaitable(value):
                    if awaited is None:
                        awaited = []
                    awaited += (kwargs, name, value)
        else:
            kwargs, prefixed = _separate_prefixed_kwargs(kwargs)
            for index in range(inj_kwargs_len):
                injection = <NamedInjection>inj_kwargs[index]
                name = _get_name(injection)
                if name in kwargs:
                    continue
                if name in prefixed:
                    value = _get_value_kwargs(injection, prefixed[name])
                else:
                    value = _inject(injection, current)
                kwargs[name] = value
                if is_awaitable(value):
                    if awaited is None:
                        awaited = []
                    awaited += (kwargs, name, value)

    if awaited is None:
        if kwargs:
            return PyObject_Call(call, args, <PyObject*>kwargs)
        return PyObject_Call(call, args, NULL)
    if sync_provider is not None:
        for index in range(2, len(awaited), 3):
            _close_quietly(awaited[index])
        raise ScopeError(
            f"{describe(sync_provider)} depends on a provider that must be awaited "
            "and cannot be created in a synchronous scope: use "
            "`async with container.scope():`."
        )
    deferred[0] = True
    positional_list = list(args)
    for index in range(0, len(awaited), 3):
        if awaited[index] is None:
            awaited[index] = positional_list
    return _invoke_async(call, positional_list, kwargs, awaited)


async def _invoke_async(call, list args, dict kwargs, list awaited):
    cdef Py_ssize_t index
    for index in range(0, len(awaited), 3):
        try:
            awaited[index][awaited[index + 1]] = await awaited[index + 2]
        except BaseException:
            for rest in awaited[index + 5::3]:
                close = getattr(rest, "close", None)
                if close is not None:
                    close()
            raise
    result = call(*args, **kwargs)
    if is_awaitable(result):
        result = await result
    return result


# Creating instances once per scope ----------------------------------------

cdef object _create(Provider provider, Scope scope, object current, object entry, tuple args, dict kwargs):
    """First resolution of ``provider`` in ``scope``: build it exactly once."""
    cdef Pending marker
    cdef bint deferred = False
    if entry is not None:
        return _wait(provider, scope, <Pending>entry, args, kwargs)

    marker = creating_marker()
    PyDict_SetItem(scope.instances, provider, marker)
    token = None
    if scope is not current:
        # Bound to an outer (named) scope: its dependencies are resolved as seen
        # from that scope, so it can never capture a shorter-lived instance.
        token = set_current(scope)
        current = scope
    try:
        result = _build_instance(provider, scope, current, args, kwargs, &deferred)
    except BaseException as error:
        if token is not None:
            reset_current(token)
        _abandon(scope, provider, marker, error)
        raise
    if token is not None:
        reset_current(token)
    if deferred:
        if scope.mode == MODE_SYNC:
            _close_quietly(result)
            error = ScopeError(
                f"{describe(provider)} needs to await (an asynchronous dependency "
                "or initializer) and cannot be created in a synchronous scope: use "
                "`async with container.scope():`."
            )
            _abandon(scope, provider, marker, error)
            raise error
        # Coroutines of this event loop share an asynchronous creation.
        if type(result) is _GeneratorEntry:
            (<_GeneratorEntry>result).marker = marker
            return result  # the opening scope awaits it; the thread's marker stays
        marker = async_marker()
        PyDict_SetItem(scope.instances, provider, marker)
        scope.async_pending += 1
        if isinstance(provider, ScopedResource):
            return result  # _enter_async settles the marker itself: one coroutine less.
        return _finish_async(provider, scope, marker, result)
    _settle(scope, provider, marker, result)
    return result


cdef inline object _build_instance(
        Provider provider, Scope scope, object current, tuple args, dict kwargs, bint* deferred
):
    if isinstance(provider, ScopedFactory):
        return (<ScopedFactory>provider)._build(scope, current, args, kwargs, deferred)
    return (<ScopedResource>provider)._build(scope, current, args, kwargs, deferred)


cdef void _settle(Scope scope, object provider, Pending marker, object value) except *:
    if scope.state != STATE_OPEN:
        error = ScopeClosedError(f"{describe(provider)} was created after {scope!r} closed.")
        if marker.is_async:
            marker.fail(error, False)
        raise error
    PyDict_SetItem(scope.instances, provider, value)
    if marker.is_async:
        marker.settle(value)
    notify_settled()


cdef void _abandon(Scope scope, object provider, Pending marker, object error) except *:
    cdef PyObject* entry = PyDict_GetItemWithError(scope.instances, provider)
    if entry is not NULL and <object>entry is marker:
        del scope.instances[provider]
    if marker.is_async:
        # A cancelled creator leaves the work to whoever waits; other errors are shared.
        marker.fail(error, isinstance(error, _CancelledError))
    notify_settled()


async def _finish_async(provider, Scope scope, Pending marker, coroutine):
    # The creating task: if it ends up waiting on its own creation, that is a cycle.
    marker.task = _current_task()
    try:
        try:
            value = await coroutine
        finally:
            scope.async_pending -= 1
    except BaseException as error:
        _abandon(scope, provider, marker, error)
        raise
    _settle(scope, provider, marker, value)
    return value


cdef object _wait(Provider provider, Scope scope, Pending marker, tuple args, dict kwargs):
    """Another resolution is creating ``provider`` in ``scope``: share its result."""
    if marker.owner == PyThread_get_thread_ident():
        if marker.is_async and (marker.task is None or marker.task is not _current_task()):
            return _wait_async(provider, marker, args, kwargs)
        raise ScopeError(
            f"Circular dependency: {describe(provider)} was resolved again while "
            "it was being created."
        )
    block_while_creating(scope, provider, marker)
    return provider(*args, **kwargs)


async def _wait_async(Provider provider, Pending marker, tuple args, dict kwargs):
    await marker.wait_async()
    if marker.error is None:
        return marker.value
    if not marker.retry:
        raise marker.error
    result = provider(*args, **kwargs)
    if is_awaitable(result):
        result = await result
    return result


cdef inline object _call(Provider provider, tuple args, dict kwargs):
    """``__call__`` of the scoped providers: an overriding provider, else the scope's instance."""
    if provider._last_overriding is not None:
        return provider._last_overriding(*args, **kwargs)
    # Direct C calls for the exact classes: on CPython 3.12+ a cpdef call checks
    # for a Python override with an attribute lookup on every call.
    if type(provider) is ScopedFactory:
        result = (<ScopedFactory>provider)._resolve(current_scope(), args, kwargs)
    elif type(provider) is ScopedResource:
        result = (<ScopedResource>provider)._resolve(current_scope(), args, kwargs)
    else:
        result = provider._provide(args, kwargs)
    if provider._async_mode == ASYNC_MODE_ENABLED and not is_awaitable(result):
        return ready(result)
    return result


# ScopedFactory -------------------------------------------------------------

cdef class ScopedFactory(Factory):
    """Factory that creates one instance per scope.

    The first call inside an open scope creates the instance; every later call
    in that scope, from any task or thread sharing it, returns the same one.
    Injections follow :class:`~dependency_injector.providers.Factory`.

    ``scope="name"`` binds the provider to the nearest open scope with that
    name; without it, it binds to the innermost open scope.  (An injection
    literally named ``scope`` can be set with ``add_kwargs(scope=...)``.)
    """

    def __init__(self, provides=None, *args, scope=None, **kwargs):
        self._scope_name = scope
        Factory.__init__(self, provides, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        return _call(self, args, kwargs)

    def async_(self, *args, **kwargs):
        """Return an awaitable of the instance, whether or not it is created yet."""
        result = _call(self, args, kwargs)
        return result if is_awaitable(result) else ready(result)

    def __deepcopy__(self, memo):
        copied = memo.get(id(self))
        if copied is not None:
            return copied
        copied = Factory.__deepcopy__(self, memo)
        (<ScopedFactory>copied)._scope_name = self._scope_name
        (<ScopedFactory>copied)._name = self._name
        return copied

    @property
    def scope_name(self):
        """The scope name this provider binds to, or ``None`` for the innermost."""
        return self._scope_name

    cpdef object _provide(self, tuple args, dict kwargs):
        return self._resolve(current_scope(), args, kwargs)

    cdef object _resolve(self, object current, tuple args, dict kwargs):
        cdef Scope scope = _scope_for(self, self._scope_name, current)
        cdef PyObject* entry = PyDict_GetItemWithError(scope.instances, self)
        if entry is not NULL and type(<object>entry) is not Pending:
            return <object>entry
        return _create(self, scope, current, <object>entry if entry is not NULL else None, args, kwargs)

    cdef object _build(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred):
        cdef Callable instantiator = self._instantiator
        instance = _invoke(
            instantiator._provides,
            args,
            instantiator._args,
            instantiator._args_len,
            kwargs,
            instantiator._kwargs,
            instantiator._kwargs_len,
            current,
            self if scope.mode == MODE_SYNC else None,
            deferred,
        )
        if not deferred[0] and is_awaitable(instance):
            deferred[0] = True
        if self._attributes_len == 0:
            return instance
        if deferred[0]:
            return _inject_attributes_async(self._attributes, instance, current)
        attributes = _invoke(
            dict, (), (), 0, {}, self._attributes, self._attributes_len, current,
            self if scope.mode == MODE_SYNC else None, deferred,
        )
        if deferred[0]:
            return _inject_attributes_async(None, _pair(instance, attributes), current)
        for name, value in (<dict>attributes).items():
            setattr(instance, name, value)
        return instance


async def _pair(instance, attributes):
    return instance, await attributes


async def _inject_attributes_async(tuple injections, awaitable, current):
    cdef bint deferred = False
    if injections is None:
        instance, attributes = await awaitable
    else:
        instance = await awaitable
        attributes = _invoke(dict, (), (), 0, {}, injections, len(injections), current, None, &deferred)
        if deferred:
            attributes = await attributes
    for name, value in attributes.items():
        setattr(instance, name, value)
    return instance


# ScopedResource ------------------------------------------------------------

cdef int _classify(object provides) except -1:
    if provides is None:
        return KIND_UNSET
    if inspect.isasyncgenfunction(provides):
        return KIND_ASYNC_GENERATOR
    if inspect.isgeneratorfunction(provides):
        return KIND_GENERATOR
    if isinstance(provides, type):
        if issubclass(provides, _resources.Resource):
            return KIND_RESOURCE_WITH_ERROR if _takes_error(provides.shutdown) else KIND_RESOURCE
        if issubclass(provides, _resources.AsyncResource):
            if _takes_error(provides.shutdown):
                return KIND_ASYNC_RESOURCE_WITH_ERROR
            return KIND_ASYNC_RESOURCE
    if iscoroutinefunction(provides):
        return KIND_COROUTINE
    return KIND_CALLABLE


cdef bint _takes_error(object shutdown) except -1:
    """Whether a Resource's ``shutdown(self, resource, exc)`` accepts the exception."""
    try:
        parameters = list(inspect.signature(shutdown).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        parameter
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3


cdef class ScopedResource(BaseResource):
    """Resource with one instance per scope, finalised when the scope exits.

    The initializer may be a generator function, an async generator function,
    a function returning a context manager or an async context manager, a
    :class:`dependency_injector.resources.Resource` or ``AsyncResource``
    subclass, a coroutine function or a plain callable.  The exception that
    ends the scope is delivered to its finaliser: thrown into the generator,
    passed to ``__exit__``/``__aexit__``, or given to ``shutdown(resource,
    exc)`` when a Resource subclass's ``shutdown`` accepts it.

    ``container.init_resources()`` and ``shutdown_resources()`` leave scoped
    resources to their scopes: ``init()`` initialises in the current scope
    when one is open and does nothing otherwise, ``shutdown()`` does nothing
    (the scope finalises), and ``initialized`` is always ``False``.
    """

    def __init__(self, provides=None, *args, scope=None, **kwargs):
        self._scope_name = scope
        BaseResource.__init__(self, provides, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        return _call(self, args, kwargs)

    def async_(self, *args, **kwargs):
        """Return an awaitable of the resource, whether or not it is initialised yet."""
        result = _call(self, args, kwargs)
        return result if is_awaitable(result) else ready(result)

    def __deepcopy__(self, memo):
        copied = memo.get(id(self))
        if copied is not None:
            return copied
        copied = BaseResource.__deepcopy__(self, memo)
        (<ScopedResource>copied)._scope_name = self._scope_name
        (<ScopedResource>copied)._name = self._name
        return copied

    def set_provides(self, provides):
        """Set the initializer."""
        provides = _resolve_string_import(provides)
        self._kind = _classify(provides)
        self._provides = provides
        return self

    @property
    def scope_name(self):
        """The scope name this provider binds to, or ``None`` for the innermost."""
        return self._scope_name

    @property
    def is_async(self):
        """Whether the initializer is known to be asynchronous before it runs."""
        return self._kind > 10

    @property
    def initialized(self):
        """Always ``False``: scoped resources live in scopes, not in the container."""
        return False

    def init(self):
        """Initialise in the current scope if one is open; otherwise do nothing."""
        cdef object current = current_scope()
        cdef Scope scope
        if current is None:
            return None
        if self._scope_name is not None:
            scope = <Scope>current
            while scope is not None and scope.name != self._scope_name:
                scope = scope.parent
            if scope is None or scope.state != STATE_OPEN:
                return None
        elif (<Scope>current).state != STATE_OPEN:
            return None
        return self.__call__()

    def shutdown(self):
        """Do nothing: the scope that created an instance finalises it."""
        return None

    cdef void set_state(self, ResourceState state):
        pass

    cdef ResourceState get_state(self):
        return None

    cpdef object _provide(self, tuple args, dict kwargs):
        return self._resolve(current_scope(), args, kwargs)

    cdef object _resolve(self, object current, tuple args, dict kwargs):
        cdef Scope scope = _scope_for(self, self._scope_name, current)
        cdef PyObject* entry = PyDict_GetItemWithError(scope.instances, self)
        if entry is not NULL and type(<object>entry) is not Pending:
            return <object>entry
        return _create(self, scope, current, <object>entry if entry is not NULL else None, args, kwargs)

    cdef object _build(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred):
        if self._kind == KIND_UNSET:
            raise ScopeError(f"{describe(self)} has no initializer: call set_provides() first.")
        if self._kind > 10 and scope.mode == MODE_SYNC:
            raise ScopeError(
                f"{describe(self)} is asynchronous and cannot be initialised in a "
                "synchronous scope: use `async with container.scope():`."
            )
        obj = _invoke(
            self._provides,
            args,
            self._args,
            self._args_len,
            kwargs,
            self._kwargs,
            self._kwargs_len,
            current,
            self if scope.mode == MODE_SYNC else None,
            deferred,
        )
        if deferred[0]:
            return _enter_async(self, scope, obj, True)
        return self._enter_sync(scope, obj, self._kind, deferred)

    cdef object _enter_sync(self, Scope scope, object obj, int kind, bint* deferred):
        """Enter what the initializer returned, as ``kind``; defer what must be awaited."""
        cdef int finalizer
        if kind == KIND_GENERATOR:
            first = PyIter_Next(obj)
            if first is NULL:
                raise generator_error(self, False, True)
            value = <object>first
            Py_DECREF(value)
            finalizer = FINALIZE_GENERATOR
        elif kind == KIND_RESOURCE or kind == KIND_RESOURCE_WITH_ERROR:
            value = obj.__enter__()
            finalizer = FINALIZE_RESOURCE if kind == KIND_RESOURCE_WITH_ERROR else FINALIZE_CONTEXT_MANAGER
        elif kind == KIND_CALLABLE and not is_awaitable(obj) and not _is_async_context_manager(obj):
            if not _is_context_manager(obj):
                return obj
            value = obj.__enter__()
            finalizer = FINALIZE_CONTEXT_MANAGER
        else:
            if scope.mode == MODE_SYNC:
                _close_quietly(obj)
                raise ScopeError(
                    f"{describe(self)} returned an awaitable or async context manager "
                    "and cannot be initialised in a synchronous scope: use "
                    "`async with container.scope():`."
                )
            deferred[0] = True
            if kind == KIND_ASYNC_GENERATOR and scope.entry_provider is self:
                scope.entry_provider = None
                return _GeneratorEntry(self, scope, obj)
            return _enter_async(self, scope, obj, False)
        if not scope.add_finalizer(self, finalizer, obj):
            scope.discard(self, finalizer, obj)
            raise ScopeClosedError(f"{describe(self)} was initialised after its scope closed.")
        return value


cdef bint _is_context_manager(object obj) except -1:
    return hasattr(obj, "__enter__") and hasattr(obj, "__exit__")


cdef bint _is_async_context_manager(object obj) except -1:
    return hasattr(obj, "__aenter__") and hasattr(obj, "__aexit__")


cdef void _close_quietly(object obj):
    close = getattr(obj, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


async def _enter_async(ScopedResource provider, Scope scope, obj, bint obj_is_call):
    """Initialise a resource that must await, then settle its marker.

    ``_create`` puts this creation's asynchronous marker in the scope before
    the coroutine first runs; it is read back here.  Whatever needs no await
    once the initializer's result is in hand goes through ``_enter_sync``.
    """
    cdef Pending marker = <Pending>scope.instances[provider]
    cdef int kind = provider._kind
    cdef int finalizer = 0
    cdef bint deferred = False
    marker.task = _current_task()
    try:
        try:
            if obj_is_call:
                obj = await obj
            if kind == KIND_ASYNC_GENERATOR:
                value = await anext(obj, _NOT_YIELDED)
                if value is _NOT_YIELDED:
                    raise generator_error(provider, True, True)
                finalizer = FINALIZE_ASYNC_GENERATOR
            elif kind == KIND_ASYNC_RESOURCE or kind == KIND_ASYNC_RESOURCE_WITH_ERROR:
                value = await obj.__aenter__()
                if kind == KIND_ASYNC_RESOURCE_WITH_ERROR:
                    finalizer = FINALIZE_ASYNC_RESOURCE
                else:
                    finalizer = FINALIZE_ASYNC_CONTEXT_MANAGER
            else:
                if kind == KIND_COROUTINE or kind == KIND_CALLABLE:
                    if is_awaitable(obj):
                        obj = await obj
                    kind = KIND_CALLABLE
                if kind == KIND_CALLABLE and _is_async_context_manager(obj):
                    value = await obj.__aenter__()
                    finalizer = FINALIZE_ASYNC_CONTEXT_MANAGER
                elif kind == KIND_CALLABLE and is_awaitable(obj):
                    value = obj  # an awaitable's awaitable is the value, as upstream does
                else:
                    value = provider._enter_sync(scope, obj, kind, &deferred)
            if finalizer and not scope.add_finalizer(provider, finalizer, obj):
                pending = scope.discard(provider, finalizer, obj)
                if pending is not None:
                    await pending
                raise ScopeClosedError(
                    f"{describe(provider)} was initialised after its scope closed."
                )
        finally:
            scope.async_pending -= 1
    except BaseException as error:
        _abandon(scope, provider, marker, error)
        raise
    _settle(scope, provider, marker, value)
    return value


cdef object _NOT_YIELDED = object()


cdef class _GeneratorEntry(AsyncEntry):
    """An eager async-generator resource: the opening scope awaits its first value."""

    cdef ScopedResource provider
    cdef Scope scope
    cdef Pending marker

    def __cinit__(self, ScopedResource provider, Scope scope, agen):
        self.provider = provider
        self.scope = scope
        self.agen = agen

    cdef object finish(self, object value, bint yielded):
        if not yielded:
            error = generator_error(self.provider, True, True)
            self.fail(error)
            raise error
        if not self.scope.add_finalizer(self.provider, FINALIZE_ASYNC_GENERATOR, self.agen):
            error = ScopeClosedError(
                f"{describe(self.provider)} was initialised after its scope closed."
            )
            self.fail(error)
            raise error
        _settle(self.scope, self.provider, self.marker, value)
        return value

    cdef void fail(self, object error) except *:
        _abandon(self.scope, self.provider, self.marker, error)


# ScopedValue ---------------------------------------------------------------

cdef class ScopedValue(Provider):
    """Provides a value given when a scope was opened.

    ``container.scope(values={"request": request})`` opens a scope holding
    ``request``; ``ScopedValue("request")`` resolved inside it returns that
    object.  Keys may be any hashable (a string, a type).  The innermost open
    scope holding the key wins; ``scope="name"`` reads only that scope.
    """

    def __init__(self, key=None, *, scope=None):
        self._key = key
        self._scope_name = scope
        Provider.__init__(self)

    def __call__(self, *args, **kwargs):
        if self._last_overriding is not None:
            return self._last_overriding(*args, **kwargs)
        if type(self) is ScopedValue:
            return self._lookup()
        return self._provide(args, kwargs)

    def __deepcopy__(self, memo):
        copied = memo.get(id(self))
        if copied is not None:
            return copied
        copied = ScopedValue(self._key, scope=self._scope_name)
        (<ScopedValue>copied)._name = self._name
        memo[id(self)] = copied
        self._copy_overridings(copied, memo)
        return copied

    def __str__(self):
        return f"<{type(self).__module__}.{type(self).__name__}({self._key!r}) at {hex(id(self))}>"

    @property
    def key(self):
        """The key looked up in the scope's values."""
        return self._key

    @property
    def scope_name(self):
        """The scope name this provider reads from, or ``None`` for any."""
        return self._scope_name

    cpdef object _provide(self, tuple args, dict kwargs):
        return self._lookup()

    cdef object _lookup(self):
        cdef Scope scope = _scope_for(self, self._scope_name, current_scope())
        cdef Scope searched = scope
        cdef PyObject* value
        while searched is not None:
            if searched._values is not None:
                value = PyDict_GetItemWithError(searched._values, self._key)
                if value is not NULL:
                    return <object>value
            if self._scope_name is not None:
                break
            searched = searched.parent
        raise MissingScopeValueError(
            f"{describe(self)} needs the value {self._key!r}, but no open scope was "
            f"given it. Pass it when opening the scope: "
            f"container.scope(values={{{self._key!r}: ...}})."
        )


_register_resource_type(ScopedResource)


cdef object _resolve_resource(object provider, object current):
    return (<ScopedResource>provider)._resolve(current, _NO_ARGS, _NO_KWARGS)


set_resource_resolver(_resolve_resource)


def _upstream_public_names():
    names = []
    for name in dir(_upstream):
        if name.startswith("_"):
            continue
        obj = getattr(_upstream, name)
        if getattr(obj, "__module__", None) == "dependency_injector.providers" or name == "UNDEFINED":
            names.append(name)
    return names


for _public_name in _upstream_public_names():
    globals()[_public_name] = getattr(_upstream, _public_name)

__all__ = sorted([*_upstream_public_names(), "ScopedFactory", "ScopedResource", "ScopedValue"])
