# cython: language_level=3
"""Providers: every public provider of dependency-injector, plus scoped ones.

:class:`ScopedFactory` and :class:`ScopedResource` give one instance per
open scope (see :class:`dependency_injector_scoped.Scope`);
:class:`ScopedValue` reads a value given when a scope was opened.

A scoped provider is synchronous or asynchronous, as dependency-injector's
async mode has it: an asynchronous one returns an awaitable at every call,
also once its instance exists (awaiting that never suspends).
"""

import inspect
import sys
import weakref

import dependency_injector.providers as _upstream
from dependency_injector import resources as _resources
from dependency_injector.providers import _resolve_string_import

cimport cython
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF, PyObject, _Py_REFCNT
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
    CLOSE_ASYNC_CONTEXT_MANAGER,
    CLOSE_ASYNC_GENERATOR,
    CLOSE_ASYNC_RESOURCE,
    CLOSE_ASYNC_RESOURCE_WITH_ERROR,
    CLOSE_CONTEXT_MANAGER,
    CLOSE_GENERATOR,
    CLOSE_RESOURCE,
    CLOSE_RESOURCE_WITH_ERROR,
    MODE_SYNC,
    STATE_CLOSING,
    STATE_OPEN,
    Closer,
    Creation,
    Plan,
    Ready,
    Scope,
    awaiting,
    current_scope,
    describe,
    generator_error,
    is_awaitable,
    new_closer,
    next_step,
    ready,
)

from ._scope import invalidate_plans
from .errors import MissingScopeValueError, NoActiveScopeError, ScopeError

if sys.version_info >= (3, 11):
    from inspect import iscoroutinefunction
else:  # pragma: no cover - Python 3.10
    from asyncio import iscoroutinefunction

cdef extern from *:
    object PyObject_Call(object callable, object args, PyObject* kwargs)
    PyObject* PyIter_Next(object iterator) except? NULL

cdef extern from *:
    """
    /* Replace an item of a tuple nobody else holds (steals ``value``). */
    static int dis_tuple_put(PyObject *tuple, Py_ssize_t index, PyObject *value) {
        return PyTuple_SetItem(tuple, index, value);
    }
    """
    int dis_tuple_put(PyObject* tuple, Py_ssize_t index, PyObject* value) except -1

cdef extern from *:
    """
    /* Calls of what scoped providers provide.  A class with object's __new__
       and a Python __init__ is instantiated by calling the two directly:
       type.__call__ would pack the arguments into a tuple and a dict and
       unpack them again.  DIS_CALL_STACK bounds the arguments a call lays
       out on the C stack. */
    #define DIS_CALL_STACK 16
    #ifndef Py_LIMITED_API
    static PyObject *dis_init_name = NULL;
    static PyObject *dis_empty_args = NULL;
    #endif

    /* Call ``callable`` with the ``size`` arguments at ``stack``: the last
       ones are the keyword arguments named by ``kwnames`` (NULL: none), the
       rest are positional. */
    static PyObject *dis_vcall(PyObject *callable, PyObject *const *stack, Py_ssize_t size,
                               PyObject *kwnames) {
    #ifndef Py_LIMITED_API
        Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
        Py_ssize_t nargs = size - nkw;
        if (Py_IS_TYPE(callable, &PyType_Type)
                && ((PyTypeObject *)callable)->tp_new == PyBaseObject_Type.tp_new
                && size < DIS_CALL_STACK) {
            PyTypeObject *type = (PyTypeObject *)callable;
            PyObject *init, *obj, *result;
            PyObject *buffer[DIS_CALL_STACK];
            Py_ssize_t i;
            if (dis_init_name == NULL) {
                dis_init_name = PyUnicode_InternFromString("__init__");
                dis_empty_args = PyTuple_New(0);
                if (dis_init_name == NULL || dis_empty_args == NULL) return NULL;
            }
            init = _PyType_Lookup(type, dis_init_name);
            if (init != NULL && PyFunction_Check(init)) {
                Py_INCREF(init);
                obj = type->tp_new(type, dis_empty_args, NULL);
                if (obj == NULL) {
                    Py_DECREF(init);
                    return NULL;
                }
                buffer[0] = obj;
                for (i = 0; i < size; i++) buffer[i + 1] = stack[i];
                result = PyObject_Vectorcall(init, buffer, (size_t)(nargs + 1), kwnames);
                Py_DECREF(init);
                if (result == NULL) {
                    Py_DECREF(obj);
                    return NULL;
                }
                if (result != Py_None) {
                    PyErr_Format(PyExc_TypeError, "__init__() should return None, not '%.200s'",
                                 Py_TYPE(result)->tp_name);
                    Py_DECREF(result);
                    Py_DECREF(obj);
                    return NULL;
                }
                Py_DECREF(result);
                return obj;
            }
        }
        return PyObject_Vectorcall(callable, stack, (size_t)nargs, kwnames);
    #else
        Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
        Py_ssize_t nargs = size - nkw;
        PyObject *args, *kwargs = NULL, *result = NULL;
        Py_ssize_t i;
        args = PyTuple_New(nargs);
        if (args == NULL) return NULL;
        for (i = 0; i < nargs; i++) {
            Py_INCREF(stack[i]);
            PyTuple_SetItem(args, i, stack[i]);
        }
        if (nkw) {
            kwargs = PyDict_New();
            if (kwargs == NULL) goto done;
            for (i = 0; i < nkw; i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GetItem(kwnames, i), stack[nargs + i]) < 0) goto done;
            }
        }
        result = PyObject_Call(callable, args, kwargs);
    done:
        Py_DECREF(args);
        Py_XDECREF(kwargs);
        return result;
    #endif
    }

    /* dis_vcall with the items of the tuple ``values``. */
    static PyObject *dis_call(PyObject *callable, PyObject *values, PyObject *kwnames) {
    #ifndef Py_LIMITED_API
        return dis_vcall(callable, &PyTuple_GET_ITEM(values, 0), PyTuple_GET_SIZE(values), kwnames);
    #else
        Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
        Py_ssize_t nargs = PyTuple_Size(values) - nkw;
        PyObject *args, *kwargs = NULL, *result;
        Py_ssize_t i;
        if (nkw == 0) return PyObject_Call(callable, values, NULL);
        args = PyTuple_GetSlice(values, 0, nargs);
        if (args == NULL) return NULL;
        kwargs = PyDict_New();
        if (kwargs == NULL) goto done;
        for (i = 0; i < nkw; i++) {
            if (PyDict_SetItem(kwargs, PyTuple_GetItem(kwnames, i),
                               PyTuple_GetItem(values, nargs + i)) < 0) goto done;
        }
        result = PyObject_Call(callable, args, kwargs);
        Py_DECREF(args);
        Py_DECREF(kwargs);
        return result;
    done:
        Py_DECREF(args);
        Py_XDECREF(kwargs);
        return NULL;
    #endif
    }

    /* Put ``value`` in an empty slot of a new tuple nobody else holds
       (steals the reference). */
    static int dis_tuple_fill(PyObject *tuple, Py_ssize_t index, PyObject *value) {
    #ifndef Py_LIMITED_API
        PyTuple_SET_ITEM(tuple, index, value);
        return 0;
    #else
        return PyTuple_SetItem(tuple, index, value);
    #endif
    }
    """
    object dis_call(object callable, object values, PyObject* kwnames)
    object dis_vcall(object callable, PyObject** stack, Py_ssize_t size, PyObject* kwnames)
    int dis_tuple_fill(object tuple, Py_ssize_t index, PyObject* value) except -1
    const Py_ssize_t DIS_CALL_STACK

# dependency-injector's async-mode values.
cdef int ASYNC_MODE_UNDEFINED = 0
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

cdef tuple _NO_ARGS = ()
cdef object _END = object()
cdef class Binding:
    """What binds a scoped provider to its scopes: the scope name, and what names it."""

    def __cinit__(self, scope_name=None):
        self.scope_name = scope_name

    cdef Binding copy(self):
        return Binding(self.scope_name)


@cython.final
cdef class _Await:
    """An instance whose attribute injections must be awaited."""

    cdef object instance

    def __cinit__(self, instance):
        self.instance = instance


# Finding the scope ---------------------------------------------------------

cdef inline Scope _scope_for(object provider, object name, object current):
    """Return the scope ``provider`` binds to, seen from ``current``, or raise.

    A closing scope still serves the instances it holds (its finalisers
    resolve in it).
    """
    cdef Scope scope
    if current is not None:
        scope = <Scope>current
        if name is not None:
            scope = scope.bound(name)
        if scope is not None and (scope.state == STATE_OPEN or scope.state == STATE_CLOSING):
            return scope
    _raise_no_scope(provider, name, current)


cdef int _raise_no_scope(object provider, object name, object current) except -1:
    cdef Scope scope
    what = describe(provider)
    if current is None:
        if name is None:
            raise NoActiveScopeError(
                f"{what} was resolved outside any open scope. Resolve it inside "
                "`with container.scope():` / `async with container.scope():` (or the "
                "framework integration's scope)."
            )
        raise NoActiveScopeError(
            f"{what} binds to scope {name!r}, but no scope is open here. Resolve it "
            f"inside `with container.scope({name!r}):`."
        )
    scope = <Scope>current
    if name is not None:
        scope = scope.bound(name)
        if scope is None:
            raise NoActiveScopeError(
                f"{what} binds to scope {name!r}, but no scope named {name!r} is open "
                f"here. Resolve it inside `with container.scope({name!r}):`."
            )
    raise scope.closed_error(provider)


cdef inline int _check_member(Provider provider, Binding binding, Scope scope) except -1:
    """Refuse to create another container's provider in this scope.

    A scope serves the providers its container's graph reaches (nested
    containers included), which its captive check covered, and providers
    that belong to no container.
    """
    cdef Plan plan = scope.plan()
    if plan is None or binding.plan is plan:
        return 0
    return _check_membership(provider, binding, plan)


cdef int _check_membership(Provider provider, Binding binding, Plan plan) except -1:
    if plan.members is None or binding.owner is None:
        return 0
    if provider in plan.members:
        binding.plan = plan
        return 0
    owner = binding.owner()
    if owner is None:
        return 0
    home = _container_label(owner)
    raise NoActiveScopeError(
        f"{describe(provider)} belongs to {home}, but the scope it was resolved in was "
        f"opened by {plan.container_label}, which does not serve it: open a scope of "
        f"{home} for it (`with container.scope():` on a {home}), or reach it from "
        f"{plan.container_label}'s providers."
    )


def _container_label(container):
    parent = getattr(container, "declarative_parent", None)
    cls = parent if parent is not None else type(container)
    return cls.__name__


cdef object _async_in_sync(object provider):
    return ScopeError(
        f"{describe(provider)} needs to await (an asynchronous initializer or "
        "dependency) and cannot be created in a synchronous scope: use "
        "`async with container.scope():`."
    )


# Resolving -----------------------------------------------------------------

cdef inline Binding _binding_of(Provider provider):
    if type(provider) is ScopedFactory:
        return (<ScopedFactory>provider)._binding
    return (<ScopedResource>provider)._binding


cdef inline object _call(Provider provider, tuple args, dict kwargs):
    """``__call__`` of the scoped providers: the overriding provider, or the scope's instance."""
    cdef bint pending = False
    if provider._last_overriding is not None:
        result = provider._last_overriding(*args, **kwargs)
        if provider._async_mode == ASYNC_MODE_ENABLED and not is_awaitable(result):
            return ready(result)
        return result
    if type(provider) is ScopedFactory or type(provider) is ScopedResource:
        result = _resolve(provider, _binding_of(provider), current_scope(), args, kwargs, &pending)
        if pending:
            return awaiting(result)
    else:
        # A subclass: ``_provide`` is the hook.
        result = provider._provide(args, kwargs)
        pending = is_awaitable(result)
    if provider._async_mode == ASYNC_MODE_ENABLED and not pending and type(result) is not Ready:
        return ready(result)
    return result


cdef object _async_call(Provider provider, tuple args, dict kwargs):
    """``async_()``: an awaitable of the instance.

    A synchronous provider that another thread is creating is waited for by
    suspending, not by blocking the calling thread.
    """
    cdef Creation creation = _foreign_creation(provider)
    if creation is not None:
        return awaiting(_after_creation(provider, creation, args, kwargs))
    result = _call(provider, args, kwargs)
    return result if is_awaitable(result) else ready(result)


cdef Creation _foreign_creation(Provider provider):
    """Another thread's unfinished creation of ``provider`` in its scope, if any."""
    if provider._last_overriding is not None or provider._async_mode == ASYNC_MODE_ENABLED:
        return None
    if type(provider) is not ScopedFactory and type(provider) is not ScopedResource:
        return None
    cdef Binding binding = _binding_of(provider)
    current = current_scope()
    if binding is None or current is None:
        return None
    cdef Scope scope = <Scope>current
    if binding.scope_name is not None:
        scope = scope.bound(binding.scope_name)
        if scope is None:
            return None
    cdef PyObject* entry = scope.get(provider)
    if entry is NULL or type(<object>entry) is not Creation:
        return None
    cdef Creation creation = <Creation>entry
    if creation.finished or creation.task is not None or creation.thread == PyThread_get_thread_ident():
        return None
    return creation


async def _after_creation(Provider provider, Creation creation, tuple args, dict kwargs):
    await creation.wait_async()
    return _call(provider, args, kwargs)


cdef inline object _instance(PyObject* entry):
    """The instance a table entry holds (an asynchronous one may be kept as a ``Ready``)."""
    value = <object>entry
    return (<Ready>value).value if type(value) is Ready else value


cdef object _resolve(
        Provider provider,
        Binding binding,
        object current,
        tuple args,
        dict kwargs,
        bint* pending,
        bint nested=False,
):
    """The scope's entry for ``provider``: its instance, or what creates it.

    An asynchronous provider's instance is handed out as a ``Ready``, which
    the table keeps from its first hit on; a miss of one returns the coroutine
    that creates it (``pending`` is set).
    """
    if binding is None:
        raise ScopeError(
            f"{describe(provider)} was not initialised: a subclass of "
            f"{type(provider).__name__} must call super().__init__(), and an instance "
            "is made by calling the class, not with __new__()."
        )
    cdef Scope scope = _scope_for(provider, binding.scope_name, current)
    cdef PyObject* entry = scope.get(provider)
    if entry is not NULL and type(<object>entry) is not Creation:
        if nested:
            return _instance(entry)
        if provider._async_mode != ASYNC_MODE_ENABLED or type(<object>entry) is Ready:
            return <object>entry
        # Awaited again at every later hit: kept as the Ready it is handed out as.
        return scope.keep_ready(provider, <object>entry)
    if provider._async_mode == ASYNC_MODE_ENABLED:
        pending[0] = True
        if scope.mode == MODE_SYNC and scope.state == STATE_OPEN:
            raise _async_in_sync(provider)
        if nested and entry is NULL:
            # A dependency: created when the creation that needs it gets to it,
            # after the dependencies before it, so it may find all it needs
            # ready.  The provider itself stands for it in the call.
            return provider
        return _create_async(provider, binding, scope, args, kwargs, None)
    return _create_sync(provider, binding, scope, current, entry, args, kwargs, pending)


cdef inline bint _is_deferred(object awaitable):
    """Whether a call's awaitable injection is a dependency left for its creation to create."""
    return type(awaitable) is ScopedFactory or type(awaitable) is ScopedResource


cdef object _realize(Provider provider, object current, bint* pending):
    """The instance of a deferred dependency, or (``pending``) the coroutine that creates it.

    Created synchronously when everything it needs is ready by now.
    """
    cdef Binding binding = _binding_of(provider)
    cdef Scope scope = _scope_for(provider, binding.scope_name, current)
    cdef PyObject* entry = scope.get(provider)
    if entry is not NULL and type(<object>entry) is not Creation:
        return _instance(entry)
    if (
        entry is NULL
        and scope.state == STATE_OPEN
        and type(provider) is ScopedFactory
        and not (<ScopedFactory>provider)._awaited
    ):
        return _create_sync(provider, binding, scope, current_scope(), NULL, _NO_ARGS, None, pending)
    pending[0] = True
    return _create_async(provider, binding, scope, _NO_ARGS, None, None)


cdef object _create_sync(
        Provider provider,
        Binding binding,
        Scope scope,
        object current,
        PyObject* entry,
        tuple args,
        dict kwargs,
        bint* pending,
):
    """Create ``provider`` in ``scope`` exactly once, in this thread."""
    cdef Creation creation
    cdef bint deferred = False
    while entry is not NULL:
        if type(<object>entry) is not Creation:
            return <object>entry
        # A reference of our own: the table drops its own once the creation settles.
        creation = <Creation>entry
        creation.wait()
        entry = scope.get(provider)
    _check_member(provider, binding, scope)
    creation = scope.begin(provider, scope is not current, False)
    try:
        value = _produce_scoped(provider, scope, args, kwargs, &deferred)
    except BaseException as error:
        scope.abandon(creation, error)
        raise
    if deferred:
        # It turned out to need an await: from now on the provider is
        # asynchronous, and a coroutine creates the instance.
        scope.abandon(creation, None)
        provider._async_mode = ASYNC_MODE_ENABLED
        if type(provider) is ScopedFactory:
            (<ScopedFactory>provider)._awaited = True
        if scope.mode == MODE_SYNC:
            _close_quietly(value)
            raise _async_in_sync(provider)
        pending[0] = True
        return _create_async(provider, binding, scope, args, kwargs, value)
    scope.settle(creation, value)
    return value


cdef inline object _produce_scoped(Provider provider, Scope scope, tuple args, dict kwargs, bint* deferred):
    if isinstance(provider, ScopedFactory):
        return (<ScopedFactory>provider)._produce(scope, scope, args, kwargs, deferred)
    return (<ScopedResource>provider)._produce(scope, scope, args, kwargs, deferred)


cdef inline Creation _begin_async(Provider provider, Binding binding, Scope scope):
    _check_member(provider, binding, scope)
    return scope.begin(provider, scope is not current_scope(), True)


async def _create_async(
        Provider provider, Binding binding, Scope scope, tuple args, dict kwargs, started
):
    """Create ``provider`` in ``scope`` exactly once; coroutines of the scope share it.

    Nothing is marked before this coroutine first runs, so a coroutine that is
    closed or dropped unstarted holds nothing; once marked, every way out
    settles or abandons the mark.  ``started`` is what a synchronous attempt
    already produced before it found it must await.

    The dependencies it defers are created here too, depth first, each with a
    mark of its own: the marks form the stack of this coroutine's creations
    (``Creation.parent``, each holding its pending call in ``work``), not a
    coroutine per creation.  A dependency that another coroutine or thread is
    creating is waited for.
    """
    cdef Creation root
    cdef Creation frame
    cdef Creation inner
    cdef Creation settled
    cdef PyObject* entry
    cdef bint deferred = False
    cdef Provider dependency
    cdef Binding dependency_binding
    cdef Scope dependency_scope
    while True:
        entry = scope.get(provider)
        if entry is NULL:
            break
        if type(<object>entry) is not Creation:
            _close_quietly(started)
            return _instance(entry)
        await (<Creation>entry).wait_async()
    if started is None:
        root = _begin_async(provider, binding, scope)
    else:
        try:
            root = _begin_async(provider, binding, scope)
        except BaseException:
            _close_quietly(started)
            raise
    # The innermost unsettled creation of this coroutine; its parents up to
    # ``root`` wait for it.
    frame = root
    obj = None
    try:
        if started is not None:
            obj = started
            started = None
            deferred = True
        else:
            obj = _produce_scoped(provider, scope, args, kwargs, &deferred)
        while True:
            if type(obj) is _Call:
                # Awaitable injections, one after the other: no task, no gather.
                awaitable = (<_Call>obj).next_pending()
                if awaitable is not None:
                    if _is_deferred(awaitable):
                        dependency = <Provider>awaitable
                        dependency_binding = _binding_of(dependency)
                        dependency_scope = _scope_for(
                            dependency, dependency_binding.scope_name, frame.scope
                        )
                        entry = dependency_scope.get(dependency)
                        if entry is not NULL and type(<object>entry) is not Creation:
                            (<_Call>obj).fill(_instance(entry))
                            continue
                        if entry is NULL:
                            # Its creation becomes the current frame.
                            _check_member(dependency, dependency_binding, dependency_scope)
                            # The frame's scope is current (its creation made it so).
                            inner = dependency_scope.begin_inner(
                                dependency, dependency_scope is not frame.scope, frame
                            )
                            frame.work = obj
                            inner.parent = frame
                            frame = inner
                            obj = None
                            deferred = False
                            obj = _produce_scoped(
                                dependency, dependency_scope, _NO_ARGS, None, &deferred
                            )
                            continue
                        # Another coroutine or thread creates it (or this is a cycle).
                        value = await _create_async(
                            dependency, dependency_binding, dependency_scope, _NO_ARGS, None, None
                        )
                    else:
                        frame.record()
                        value = await awaitable
                    (<_Call>obj).fill(value)
                    continue
                obj = (<_Call>obj).invoke()
                deferred = True
            # What the frame's provider produced, to be awaited or entered.
            if not deferred:
                value = obj
            elif isinstance(frame.provider, ScopedFactory):
                if type(obj) is _Await:
                    obj = (<_Await>obj).instance
                elif is_awaitable(obj):
                    frame.record()
                    obj = await obj
                if (<ScopedFactory>frame.provider)._attributes_len:
                    frame.record()
                    value = await _set_attributes(<ScopedFactory>frame.provider, frame.scope, obj)
                else:
                    value = obj
            elif (<ScopedResource>frame.provider)._kind == KIND_ASYNC_GENERATOR:
                # The common case inline: no coroutine of its own.
                frame.record()
                try:
                    value = await next_step(obj)
                except StopAsyncIteration:
                    value = _END
                if value is _END:
                    raise generator_error(frame.provider, True, True)
                closer = new_closer(frame.provider, CLOSE_ASYNC_GENERATOR, obj, None, False)
                if not frame.scope.add_closer(closer):
                    await _discard(frame.provider, frame.scope, closer)
            else:
                frame.record()
                value = await _enter_async(<ScopedResource>frame.provider, frame.scope, obj)
            # Off the stack before it settles: settling may raise (its scope closed).
            settled = frame
            frame = settled.parent
            settled.parent = None
            settled.scope.settle(settled, value)
            if frame is None:
                return value
            obj = frame.work
            frame.work = None
            (<_Call>obj).fill(value)
    except BaseException as error:
        if type(obj) is _Call:
            (<_Call>obj).close_rest((<_Call>obj).filled + 1)
        while frame is not None:
            if frame.work is not None:
                (<_Call>frame.work).close_rest((<_Call>frame.work).filled + 1)
                frame.work = None
            settled = frame
            frame = settled.parent
            settled.parent = None
            settled.scope.abandon(settled, error)
        raise


# Injections ------------------------------------------------------------------

cdef inline object _inject(Injection injection, object current, bint* awaitable):
    """The value of one injection; ``awaitable`` set when it must be awaited.

    A dependency that is a scoped provider of this module, not overridden,
    is resolved through the C-level path: the same result as calling it,
    without building call arguments, and an existing instance as it is.
    """
    cdef bint pending = False
    cdef object dependency
    cdef Provider scoped
    if injection._call:
        dependency = injection._value
        if type(dependency) is ScopedFactory or type(dependency) is ScopedResource:
            scoped = <Provider>dependency
        else:
            scoped = None
        if scoped is not None and scoped._last_overriding is None:
            value = _resolve(
                scoped, _binding_of(scoped), current, _NO_ARGS, None, &pending, True
            )
            if pending:
                awaitable[0] = True
            return value
    value = _get_value(injection)
    if is_awaitable(value):
        awaitable[0] = True
    return value


cdef tuple _kwnames(tuple inj_kwargs, int inj_kwargs_len, Binding cache):
    """The names of a provider's keyword injections, in order; kept in ``cache`` when given.

    None when a name repeats (``add_kwargs()`` of a name already injected):
    the last one wins, as in a dict.
    """
    if cache is not None and cache.kwnames_of is inj_kwargs:
        return cache.kwnames
    cdef tuple names = PyTuple_New(inj_kwargs_len)
    cdef Py_ssize_t index
    for index in range(inj_kwargs_len):
        name = _get_name(<NamedInjection>inj_kwargs[index])
        Py_INCREF(name)
        PyTuple_SetItem(names, index, name)
    if len(set(names)) != inj_kwargs_len:
        names = None
    if cache is not None:
        cache.kwnames_of = inj_kwargs
        cache.kwnames = names
    return names


cdef object _invoke(
        object call,
        tuple args,
        tuple inj_args,
        int inj_args_len,
        dict kwargs,
        tuple inj_kwargs,
        int inj_kwargs_len,
        object current,
        Binding cache,
        bint* deferred,
):
    """Call ``call`` with its injections, or return the ``_Call`` that must await some first.

    The arguments are laid out as a vector call takes them: injected
    positional ones, then those of the call, then the keyword injections'
    values, named by a tuple kept in ``cache``.
    """
    cdef Py_ssize_t index
    cdef Py_ssize_t place
    cdef Py_ssize_t extra = len(args)
    cdef int keywords = inj_kwargs_len
    cdef bint awaitable = False
    cdef _Call pending_call = None
    cdef Injection injection
    cdef object value
    cdef tuple names = None
    cdef bint by_dict
    cdef Py_ssize_t size
    cdef PyObject* stack[DIS_CALL_STACK]

    if not inj_args_len and not inj_kwargs_len and not kwargs:
        return dis_call(call, args, NULL)
    if inj_kwargs_len and not kwargs:
        names = _kwnames(inj_kwargs, inj_kwargs_len, cache)
    # A dict of keyword arguments instead: the keyword injections go in it.
    by_dict = bool(kwargs) or (inj_kwargs_len != 0 and names is None)
    if by_dict:
        keywords = 0
    size = inj_args_len + extra + keywords
    if by_dict or size >= DIS_CALL_STACK:
        return _invoke_in_tuple(
            call, args, inj_args, inj_args_len, kwargs, inj_kwargs, inj_kwargs_len,
            keywords, names, by_dict, current, deferred,
        )
    # Laid out on the C stack: a tuple only for a call that must wait.
    for index in range(size):
        stack[index] = NULL
    try:
        for index in range(inj_args_len + keywords):
            if index < inj_args_len:
                injection = <Injection>inj_args[index]
                place = index
            else:
                injection = <Injection>inj_kwargs[index - inj_args_len]
                place = index + extra
            value = _inject(injection, current, &awaitable)
            if awaitable:
                awaitable = False
                if pending_call is None:
                    pending_call = _Call.__new__(_Call)
                pending_call.add_place(place)
            Py_INCREF(value)
            stack[place] = <PyObject*>value
        for index in range(extra):
            value = args[index]
            Py_INCREF(value)
            stack[inj_args_len + index] = <PyObject*>value
        if pending_call is None:
            return dis_vcall(call, stack, size, <PyObject*>names if names is not None else NULL)
        pending_call.keep(stack, size)
    finally:
        for index in range(size):
            Py_XDECREF(stack[index])
    deferred[0] = True
    pending_call.call = call
    pending_call.kwnames = names
    return pending_call


cdef object _invoke_in_tuple(
        object call,
        tuple args,
        tuple inj_args,
        int inj_args_len,
        dict kwargs,
        tuple inj_kwargs,
        int inj_kwargs_len,
        int keywords,
        tuple names,
        bint by_dict,
        object current,
        bint* deferred,
):
    """:func:`_invoke` for a call with a dict of keyword arguments or many arguments."""
    cdef Py_ssize_t index
    cdef Py_ssize_t place
    cdef Py_ssize_t extra = len(args)
    cdef bint awaitable = False
    cdef _Call pending_call = None
    cdef Injection injection
    cdef object value
    values = PyTuple_New(inj_args_len + extra + keywords)
    for index in range(inj_args_len + keywords):
        if index < inj_args_len:
            injection = <Injection>inj_args[index]
            place = index
        else:
            injection = <Injection>inj_kwargs[index - inj_args_len]
            place = index + extra
        value = _inject(injection, current, &awaitable)
        if awaitable:
            awaitable = False
            if pending_call is None:
                pending_call = _Call.__new__(_Call)
            pending_call.add_place(place)
        Py_INCREF(value)
        PyTuple_SetItem(values, place, value)
    for index in range(extra):
        value = args[index]
        Py_INCREF(value)
        PyTuple_SetItem(values, inj_args_len + index, value)
    if by_dict:
        return _invoke_with_kwargs(
            call, values, pending_call, kwargs, inj_kwargs, inj_kwargs_len, current, deferred
        )
    if pending_call is None:
        return dis_call(call, values, <PyObject*>names if names is not None else NULL)
    deferred[0] = True
    pending_call.call = call
    pending_call.args = values
    pending_call.kwnames = names
    return pending_call


cdef object _invoke_with_kwargs(
        object call,
        tuple args,
        _Call pending_call,
        dict kwargs,
        tuple inj_kwargs,
        int inj_kwargs_len,
        object current,
        bint* deferred,
):
    """The rest of :func:`_invoke` with a dict of keyword arguments.

    For a call given keyword arguments, which override and prefix
    injections; or for injections that repeat a name, the last one winning.
    ``args`` holds the positional arguments, laid out, and ``pending_call``
    the places among them where an awaitable waits.
    """
    cdef Py_ssize_t index
    cdef bint awaitable = False
    cdef object value
    cdef object name
    cdef NamedInjection injection
    cdef dict prefixed

    if kwargs:
        kwargs, prefixed = _separate_prefixed_kwargs(kwargs)
    else:
        kwargs = {}
        prefixed = None
    for index in range(inj_kwargs_len):
        injection = <NamedInjection>inj_kwargs[index]
        name = _get_name(injection)
        if prefixed is None:
            value = _inject(injection, current, &awaitable)
        elif name in kwargs:
            continue
        elif name in prefixed:
            value = _get_value_kwargs(injection, prefixed[name])
            awaitable = is_awaitable(value)
        else:
            value = _inject(injection, current, &awaitable)
        if pending_call is not None and pending_call.pending is not None and name in pending_call.pending:
            # A later injection of the name replaces an awaitable one.
            pending_call.drop(name)
            _close_quietly(kwargs[name])
        kwargs[name] = value
        if awaitable:
            awaitable = False
            if pending_call is None:
                pending_call = _Call.__new__(_Call)
            pending_call.add(name)

    if pending_call is None:
        return PyObject_Call(call, args, <PyObject*>kwargs)
    deferred[0] = True
    pending_call.call = call
    pending_call.kwargs = kwargs
    pending_call.args = args
    return pending_call


@cython.final
@cython.freelist(16)
cdef class _Call:
    """A call whose awaitable injections are awaited first, one after the other.

    Its places list, in order, where each awaitable injection waits: an
    index into ``args`` (whose last items are the values of the keywords
    ``kwnames``) or, for a call given keyword arguments, a name in
    ``kwargs``.  A few indexes are kept in ``places``, more and names in
    ``pending``.  The awaitable sits in its place until :meth:`fill` puts
    its result there.
    """

    cdef int add_place(self, Py_ssize_t index) except -1:
        """Note that an awaitable waits at ``args[index]``."""
        if self.pending is None and self.count < CALL_PLACES:
            # Up to CALL_PLACES indexes are kept inline, without a list.
            self.places[self.count] = index
            self.count += 1
            return 0
        return self.add(index)

    cdef int add(self, object key) except -1:
        """Note that an awaitable waits at ``key``: an index into ``args`` or a name in ``kwargs``."""
        cdef Py_ssize_t position
        if self.pending is None:
            self.pending = [self.places[position] for position in range(self.count)]
        self.pending.append(key)
        self.count += 1

    cdef int drop(self, object name) except -1:
        """Forget the place ``name``: a later injection of the name replaced its awaitable."""
        self.pending.remove(name)
        self.count -= 1

    cdef int keep(self, PyObject** stack, Py_ssize_t size) except -1:
        """Hold the ``size`` arguments laid out at ``stack`` (new references of its own)."""
        cdef Py_ssize_t index
        cdef tuple values
        if size > CALL_PLACES:
            # Filled while only this local holds it.
            values = PyTuple_New(size)
            for index in range(size):
                Py_INCREF(<object>stack[index])
                dis_tuple_fill(values, index, stack[index])
            self.args = values
            return 0
        self.size = size
        if size > 0:
            self.v0 = <object>stack[0]
        if size > 1:
            self.v1 = <object>stack[1]
        if size > 2:
            self.v2 = <object>stack[2]
        if size > 3:
            self.v3 = <object>stack[3]

    cdef object _item(self, Py_ssize_t index):
        if self.args is not None:
            return self.args[index]
        if index == 0:
            return self.v0
        if index == 1:
            return self.v1
        if index == 2:
            return self.v2
        return self.v3

    cdef object _awaitable_at(self, Py_ssize_t position):
        if self.pending is None:
            return self._item(self.places[position])
        key = self.pending[position]
        if type(key) is int:
            return self._item(<Py_ssize_t>key)
        return self.kwargs[key]

    cdef object next_pending(self):
        """The next awaitable to await, or None when all are filled."""
        if self.filled >= self.count:
            return None
        return self._awaitable_at(self.filled)

    cdef int fill(self, object value) except -1:
        cdef Py_ssize_t index
        if self.pending is None:
            index = self.places[self.filled]
        else:
            key = self.pending[self.filled]
            if type(key) is not int:
                self.filled += 1
                self.kwargs[key] = value
                return 0
            index = key
        self.filled += 1
        if self.args is None:
            if index == 0:
                self.v0 = value
            elif index == 1:
                self.v1 = value
            elif index == 2:
                self.v2 = value
            else:
                self.v3 = value
            return 0
        # Places are filled in place: the tuple is new, made by _invoke,
        # and only this call holds it until invoke().
        cdef PyObject* items = <PyObject*>self.args
        if _Py_REFCNT(items) != 1:
            self.args = tuple(list(self.args))
            items = <PyObject*>self.args
        Py_INCREF(value)
        dis_tuple_put(items, index, <PyObject*>value)

    cdef int close_rest(self, Py_ssize_t start) except -1:
        """Close the awaitables from ``start`` on, which will never be awaited."""
        cdef Py_ssize_t position
        for position in range(start, self.count):
            _close_quietly(self._awaitable_at(position))
        self.pending = None
        self.count = 0

    cdef object invoke(self):
        cdef PyObject* stack[CALL_PLACES]
        cdef PyObject* names
        if self.kwargs is not None:
            return PyObject_Call(self.call, self.args, <PyObject*>self.kwargs)
        names = <PyObject*>self.kwnames if self.kwnames is not None else NULL
        if self.args is not None:
            return dis_call(self.call, self.args, names)
        # Borrowed: the fields hold them during the call.
        stack[0] = <PyObject*>self.v0
        stack[1] = <PyObject*>self.v1
        stack[2] = <PyObject*>self.v2
        stack[3] = <PyObject*>self.v3
        return dis_vcall(self.call, stack, self.size, names)


cdef int _close_quietly(object obj) except -1:
    if obj is None or type(obj) is Ready or _is_deferred(obj):
        return 0
    if type(obj) is _Call:
        # A creation that stopped before its injections were awaited.
        (<_Call>obj).close_rest((<_Call>obj).filled)
        return 0
    close = getattr(obj, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


async def _set_attributes(ScopedFactory provider, Scope scope, instance):
    """Inject a factory's attributes, awaiting the awaitable ones."""
    cdef bint deferred = False
    cdef bint waits = False
    if provider._attributes_len == 0:
        return instance
    attributes = _invoke(
        dict, (), (), 0, None, provider._attributes, provider._attributes_len, scope, None, &deferred
    )
    if deferred:
        while True:
            awaitable = (<_Call>attributes).next_pending()
            if awaitable is None:
                break
            try:
                if _is_deferred(awaitable):
                    value = _realize(<Provider>awaitable, scope, &waits)
                    if waits:
                        waits = False
                        value = await value
                else:
                    value = await awaitable
            except BaseException:
                (<_Call>attributes).close_rest((<_Call>attributes).filled + 1)
                raise
            (<_Call>attributes).fill(value)
        attributes = (<_Call>attributes).invoke()
    for name, value in (<dict>attributes).items():
        setattr(instance, name, value)
    return instance


# Shared by ScopedFactory and ScopedResource ------------------------------------

cdef object _copy_binding(Provider copied, Binding binding):
    cdef Binding fresh = binding.copy()
    fresh.name = binding.name
    if type(copied) is ScopedFactory or isinstance(copied, ScopedFactory):
        (<ScopedFactory>copied)._binding = fresh
    else:
        (<ScopedResource>copied)._binding = fresh


# ScopedFactory -------------------------------------------------------------


cdef class ScopedFactory(Factory):
    """ScopedFactory(provides=None, *args, scope=None, **kwargs)
--

    Factory that creates one instance per scope.

    The first call inside an open scope creates the instance; every later call
    in that scope, from any task or thread sharing it, returns the same one.
    Injections follow :class:`~dependency_injector.providers.Factory`.  When
    creating it needs an await (an asynchronous dependency, or ``provides``
    is a coroutine function), every call returns an awaitable.

    ``scope="name"`` binds the provider to the nearest open scope with that
    name; without it, it binds to the innermost open scope.  (An injection
    literally named ``scope`` can be set with ``add_kwargs(scope=...)``.)
    """

    def __init__(self, provides=None, *args, scope=None, **kwargs):
        self._binding = Binding(scope)
        Factory.__init__(self, provides, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        return _call(self, args, kwargs)

    def async_(self, *args, **kwargs):
        """Return an awaitable of the instance, whether or not it is created yet."""
        return _async_call(self, args, kwargs)

    def __deepcopy__(self, memo):
        copied = memo.get(id(self))
        if copied is not None:
            return copied
        copied = Factory.__deepcopy__(self, memo)
        _copy_binding(copied, self._binding)
        return copied

    def set_provides(self, provides):
        """Set the class or callable; a coroutine function makes the provider asynchronous."""
        Factory.set_provides(self, provides)
        if iscoroutinefunction(self.provides):
            self._async_mode = ASYNC_MODE_ENABLED
        return self

    # Keep upstream's override bookkeeping, and make every container check
    # its scoped graph again at its next scope.
    def override(self, provider):
        """Override with ``provider``; containers re-check their scoped graphs."""
        context = Factory.override(self, provider)
        invalidate_plans()
        return context

    def reset_last_overriding(self):
        """Undo the last override; containers re-check their scoped graphs."""
        Factory.reset_last_overriding(self)
        invalidate_plans()

    def reset_override(self):
        """Undo every override; containers re-check their scoped graphs."""
        Factory.reset_override(self)
        invalidate_plans()

    def register_overrides(self, provider):
        """Record that this provider overrides ``provider``."""
        Factory.register_overrides(self, provider)
        invalidate_plans()

    @property
    def scope_name(self):
        """The scope name this provider binds to, or ``None`` for the innermost."""
        return self._binding.scope_name if self._binding is not None else None

    @property
    def _name(self):
        return self._binding.name if self._binding is not None else None

    @_name.setter
    def _name(self, value):
        if self._binding is not None:
            self._binding.name = value

    cpdef object _provide(self, tuple args, dict kwargs):
        cdef bint pending = False
        return _resolve(self, self._binding, current_scope(), args, kwargs, &pending)

    cdef object _produce(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred):
        """Build the instance; ``deferred`` when the result still has to be awaited."""
        cdef Callable instantiator = self._instantiator
        if instantiator is None:
            raise ScopeError(
                f"{type(self).__name__} {self!r} was not initialised: a subclass must "
                "call super().__init__()."
            )
        instance = _invoke(
            instantiator._provides,
            args,
            instantiator._args,
            instantiator._args_len,
            kwargs,
            instantiator._kwargs,
            instantiator._kwargs_len,
            current,
            self._binding,
            deferred,
        )
        if deferred[0]:
            return instance
        if is_awaitable(instance):
            deferred[0] = True
            return instance
        if self._attributes_len == 0:
            return instance
        attributes = _invoke(
            dict, (), (), 0, None, self._attributes, self._attributes_len, current, None, deferred
        )
        if deferred[0]:
            _close_quietly(attributes)
            return _Await(instance)
        for name, value in (<dict>attributes).items():
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
    """ScopedResource(provides=None, *args, scope=None, eager=False, close_in_thread=True, **kwargs)
--

    Resource with one instance per scope, finalised when the scope exits.

    Created at its first resolution in a scope (``eager=True``: when the
    scope opens).  The initializer may be a generator function, an async
    generator function, a function returning a context manager or an async
    context manager, a :class:`dependency_injector.resources.Resource` or
    ``AsyncResource`` subclass, a coroutine function or a plain callable.
    An asynchronous one makes the provider return an awaitable at every call.

    The exception that ends the scope is delivered to its finaliser: thrown
    into the generator, passed to ``__exit__``/``__aexit__``, or given to
    ``shutdown(resource, exc)`` when a Resource subclass's ``shutdown``
    accepts it.  When the scope closes asynchronously a synchronous finaliser
    runs in a worker thread, off the event loop, unless
    ``close_in_thread=False``.

    ``container.init_resources()`` and ``shutdown_resources()`` leave scoped
    resources to their scopes: ``init()`` creates the instance in the current
    scope when one is open and does nothing otherwise, ``shutdown()`` does
    nothing (the scope finalises), and ``initialized`` is always ``False``.
    """

    def __init__(self, provides=None, *args, scope=None, eager=False, close_in_thread=True, **kwargs):
        self._binding = Binding(scope)
        self._eager = eager
        self._close_in_thread = close_in_thread
        BaseResource.__init__(self, provides, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        return _call(self, args, kwargs)

    def async_(self, *args, **kwargs):
        """Return an awaitable of the resource, whether or not it is created yet."""
        return _async_call(self, args, kwargs)

    def __deepcopy__(self, memo):
        copied = memo.get(id(self))
        if copied is not None:
            return copied
        copied = BaseResource.__deepcopy__(self, memo)
        _copy_binding(copied, self._binding)
        (<ScopedResource>copied)._eager = self._eager
        (<ScopedResource>copied)._close_in_thread = self._close_in_thread
        return copied

    def set_provides(self, provides):
        """Set the initializer."""
        provides = _resolve_string_import(provides)
        self._kind = _classify(provides)
        self._provides = provides
        if self._kind > 10:
            self._async_mode = ASYNC_MODE_ENABLED
        return self

    def override(self, provider):
        """Override with ``provider``; containers re-check their scoped graphs."""
        context = BaseResource.override(self, provider)
        invalidate_plans()
        return context

    def reset_last_overriding(self):
        """Undo the last override; containers re-check their scoped graphs."""
        BaseResource.reset_last_overriding(self)
        invalidate_plans()

    def reset_override(self):
        """Undo every override; containers re-check their scoped graphs."""
        BaseResource.reset_override(self)
        invalidate_plans()

    def register_overrides(self, provider):
        """Record that this provider overrides ``provider``."""
        BaseResource.register_overrides(self, provider)
        invalidate_plans()

    @property
    def scope_name(self):
        """The scope name this provider binds to, or ``None`` for the innermost."""
        return self._binding.scope_name if self._binding is not None else None

    @property
    def _name(self):
        return self._binding.name if self._binding is not None else None

    @_name.setter
    def _name(self, value):
        if self._binding is not None:
            self._binding.name = value

    @property
    def eager(self):
        """Whether the resource is created when its scope opens, not at first use."""
        return self._eager

    @property
    def close_in_thread(self):
        """Whether an asynchronous close runs a synchronous finaliser in a worker thread."""
        return self._close_in_thread

    @property
    def is_async(self):
        """Whether the initializer is known to be asynchronous before it runs."""
        return self._kind > 10

    @property
    def initialized(self):
        """Always ``False``: scoped resources live in scopes, not in the container."""
        return False

    def init(self):
        """Create the instance in the current scope if one is open; otherwise do nothing."""
        cdef object current = current_scope()
        cdef Scope scope
        if current is None or self._binding is None:
            return None
        scope = <Scope>current
        if self._binding.scope_name is not None:
            scope = scope.bound(self._binding.scope_name)
        if scope is None or scope.state != STATE_OPEN:
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
        cdef bint pending = False
        return _resolve(self, self._binding, current_scope(), args, kwargs, &pending)

    cdef object _produce(self, Scope scope, object current, tuple args, dict kwargs, bint* deferred):
        """Initialise and enter the resource; ``deferred`` when that must still be awaited."""
        if self._kind == KIND_UNSET:
            raise ScopeError(f"{describe(self)} has no initializer: call set_provides() first.")
        obj = _invoke(
            self._provides,
            args,
            self._args if self._args is not None else _NO_ARGS,
            self._args_len,
            kwargs,
            self._kwargs if self._kwargs is not None else _NO_ARGS,
            self._kwargs_len,
            current,
            self._binding,
            deferred,
        )
        if deferred[0]:
            return obj
        return self._enter(scope, obj, deferred)

    cdef object _enter(self, Scope scope, object obj, bint* deferred):
        """Enter what the initializer returned; defer what must be awaited."""
        cdef int kind = self._kind
        cdef int closer_kind
        cdef PyObject* first
        if kind == KIND_GENERATOR:
            first = PyIter_Next(obj)
            if first is NULL:
                raise generator_error(self, False, True)
            value = <object>first
            Py_DECREF(value)
            closer_kind = CLOSE_GENERATOR
        elif kind == KIND_RESOURCE or kind == KIND_RESOURCE_WITH_ERROR:
            value = obj.__enter__()
            closer_kind = CLOSE_RESOURCE_WITH_ERROR if kind == KIND_RESOURCE_WITH_ERROR else CLOSE_RESOURCE
        elif kind == KIND_CALLABLE and not is_awaitable(obj) and not _is_async_context_manager(obj):
            if not _is_context_manager(obj):
                return obj
            value = obj.__enter__()
            closer_kind = CLOSE_CONTEXT_MANAGER
        else:
            deferred[0] = True
            return obj
        _register(self, scope, new_closer(self, closer_kind, obj, value, self._close_in_thread))
        return value


cdef int _register(ScopedResource provider, Scope scope, Closer closer) except -1:
    """Hand a finaliser to the scope; finalise at once if the scope already closed."""
    if scope.add_closer(closer):
        return 0
    error = scope.closed_error(provider)
    pending = closer.discard(error)
    if pending is not None:
        _close_quietly(pending)
    raise error


async def _enter_async(ScopedResource provider, Scope scope, obj):
    """Enter what an initializer returned, awaiting what must be awaited."""
    cdef int kind = provider._kind
    cdef int closer_kind = 0
    cdef bint deferred = False
    if kind == KIND_ASYNC_GENERATOR:
        try:
            value = await next_step(obj)
        except StopAsyncIteration:
            value = _END
        if value is _END:
            raise generator_error(provider, True, True)
        closer_kind = CLOSE_ASYNC_GENERATOR
    elif kind == KIND_ASYNC_RESOURCE or kind == KIND_ASYNC_RESOURCE_WITH_ERROR:
        value = await obj.__aenter__()
        closer_kind = (
            CLOSE_ASYNC_RESOURCE_WITH_ERROR if kind == KIND_ASYNC_RESOURCE_WITH_ERROR
            else CLOSE_ASYNC_RESOURCE
        )
    else:
        if is_awaitable(obj) and kind != KIND_RESOURCE and kind != KIND_GENERATOR:
            obj = await obj
            if kind == KIND_COROUTINE:
                kind = KIND_CALLABLE
        if kind == KIND_CALLABLE and _is_async_context_manager(obj):
            value = await obj.__aenter__()
            closer_kind = CLOSE_ASYNC_CONTEXT_MANAGER
        elif kind == KIND_CALLABLE and is_awaitable(obj):
            return obj  # an awaitable's awaitable is the value, as upstream has it
        else:
            return provider._enter(scope, obj, &deferred)
    closer = new_closer(provider, closer_kind, obj, value, False)
    if not scope.add_closer(closer):
        await _discard(provider, scope, closer)
    return value


async def _discard(provider, Scope scope, Closer closer):
    """Finalise at once what was created after its scope closed, then raise."""
    error = scope.closed_error(provider)
    pending = closer.discard(error)
    if pending is not None:
        await pending
    raise error


cdef bint _is_context_manager(object obj) except -1:
    return hasattr(obj, "__enter__") and hasattr(obj, "__exit__")


cdef bint _is_async_context_manager(object obj) except -1:
    return hasattr(obj, "__aenter__") and hasattr(obj, "__aexit__")


# ScopedValue ---------------------------------------------------------------

cdef class ScopedValue(Provider):
    """ScopedValue(key=None, *, scope=None)
--

    Provides a value given when a scope was opened.

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
        cdef PyObject* value
        while scope is not None:
            value = scope.value_of(self._key)
            if value is not NULL:
                return <object>value
            if self._scope_name is not None:
                break
            scope = scope.parent
        raise MissingScopeValueError(
            f"{describe(self)} needs the value {self._key!r}, but no open scope was "
            f"given it. Pass it when opening the scope: "
            f"container.scope(values={{{self._key!r}: ...}})."
        )


def _owner_ref(container):
    """A weak reference to the container a scoped provider was assigned to."""
    try:
        return weakref.ref(container)
    except TypeError:  # pragma: no cover - containers are weak-referenceable
        return None


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
