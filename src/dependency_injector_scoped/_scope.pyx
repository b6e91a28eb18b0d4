# cython: language_level=3
"""The scope token (:class:`Scope`), its instance table and its finalisers.

One context variable holds the innermost open scope of the current context;
each scope links to the scope that was current when it opened.  Tasks,
threads started with a copied context and ``asyncio.gather`` children all see
the same token, so an instance created in a child is visible to its parent
and siblings.

A second context variable holds the innermost creation in progress, so a
resolution that would wait for a creation it is itself part of (directly,
through a child task, or through a thread started with a copied context)
raises instead of waiting forever.
"""

import logging
from asyncio import CancelledError
from asyncio import tasks as _asyncio_tasks
from asyncio import get_running_loop as _get_running_loop_or_raise
from asyncio import shield as _shield
from asyncio.events import _get_running_loop
from collections.abc import Coroutine as _AbcCoroutine
from contextvars import ContextVar, copy_context
from threading import Condition
from types import CoroutineType, FunctionType
from warnings import warn

cimport cython
from cpython.dict cimport PyDict_Clear, PyDict_DelItem, PyDict_SetItem
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, PyObject

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
    #define DIS_HAS_AM_AWAIT(obj) (PyType_GetSlot(Py_TYPE(obj), Py_am_await) != NULL)
    #else
    #define DIS_CONTEXTVAR_API 1
    #define DIS_ContextVar_Get(var, out) PyContextVar_Get((var), NULL, (out))
    #define DIS_ContextVar_Set(var, value) PyContextVar_Set((var), (value))
    #define DIS_ContextVar_Reset(var, token) PyContextVar_Reset((var), (token))
    #define DIS_HAS_AM_AWAIT(obj) (Py_TYPE(obj)->tp_as_async != NULL && \\
                                   Py_TYPE(obj)->tp_as_async->am_await != NULL)
    #endif

    /* One StopIteration, reused for every await that finishes through
       tp_iternext (how the awaits of CPython 3.12 and later take a Ready's
       result): the value is set again at each use.  It is reused only while
       nothing else holds it and no frame has recorded itself in it; otherwise
       a new one takes its place.  Between uses it would keep the last result
       alive: every scope that finishes lets go of it (dis_release_stop). */
    #ifndef Py_LIMITED_API
    static PyObject *dis_stop = NULL;

    static int dis_stop_reusable(PyObject *stop) {
        PyBaseExceptionObject *base = (PyBaseExceptionObject *)stop;
        if (stop == NULL || Py_REFCNT(stop) != 1 || base->traceback != NULL
                || base->context != NULL || base->cause != NULL || base->dict != NULL) {
            return 0;
        }
    #if PY_VERSION_HEX >= 0x030B0000
        if (base->notes != NULL) {
            return 0;
        }
    #endif
        return base->args != NULL && PyTuple_CheckExact(base->args)
            && PyTuple_GET_SIZE(base->args) == 1 && Py_REFCNT(base->args) == 1;
    }

    /* Put ``value`` (a new reference, consumed) in the reusable StopIteration;
       the references it held are stored in ``old``, for the caller to drop
       once nothing can run in between. */
    static void dis_stop_swap(PyObject *stop, PyObject *value, PyObject **old) {
        PyStopIterationObject *reused = (PyStopIterationObject *)stop;
        old[0] = reused->value;
        old[1] = PyTuple_GET_ITEM(reused->args, 0);
        Py_INCREF(value);
        reused->value = value;
        PyTuple_SET_ITEM(reused->args, 0, value);
        reused->suppress_context = 0;
    }

    /* Finish an await with ``value`` (a new reference, consumed): raise
       StopIteration(value), or nothing for None.  NULL is always returned. */
    static PyObject *dis_return_value(PyObject *value) {
        PyObject *stop = dis_stop;
        PyObject *old[2] = {NULL, NULL};
        if (value == Py_None) {
            Py_DECREF(value);
            return NULL;  /* exhausted without an exception: the result is None */
        }
        if (dis_stop_reusable(stop)) {
            dis_stop_swap(stop, value, old);
        } else {
            stop = PyObject_CallOneArg(PyExc_StopIteration, value);
            Py_DECREF(value);
            if (stop == NULL) {
                return NULL;
            }
            old[0] = dis_stop;
            dis_stop = stop;
        }
        /* PyErr_Restore chains no context. */
        Py_INCREF(stop);
        Py_INCREF(PyExc_StopIteration);
        PyErr_Restore(PyExc_StopIteration, stop, NULL);
        /* Dropped last: a finaliser they run finds the exception in place. */
        Py_XDECREF(old[0]);
        Py_XDECREF(old[1]);
        return NULL;
    }

    /* Let go of the last result (and of a StopIteration somebody else kept). */
    static void dis_release_stop(void) {
        PyObject *stop = dis_stop;
        PyObject *old[2] = {NULL, NULL};
        if (stop == NULL) {
            return;
        }
        if (dis_stop_reusable(stop)) {
            if (((PyStopIterationObject *)stop)->value == Py_None) {
                return;
            }
            Py_INCREF(Py_None);
            dis_stop_swap(stop, Py_None, old);
        } else {
            old[0] = stop;
            dis_stop = NULL;
        }
        Py_XDECREF(old[0]);
        Py_XDECREF(old[1]);
    }
    #else
    static void dis_release_stop(void) {}
    #endif

    #ifndef Py_LIMITED_API
    /* Ready's tp_iternext in plain C: finishing an await this way adds no
       traceback entry, which a StopIteration raised from Cython code would. */
    typedef struct { PyObject_HEAD PyObject *value; } DisReadyLayout;

    static PyObject *dis_ready_iternext(PyObject *self) {
        PyObject *value = ((DisReadyLayout *)self)->value;
        Py_INCREF(value);
        return dis_return_value(value);
    }
    #endif

    /* The context this thread runs in, compared by identity only.  A child
       task or a thread with a copied context runs in another one.  Unknown
       (NULL) under the limited API. */
    static void *dis_current_context(void) {
    #ifdef Py_LIMITED_API
        return NULL;
    #else
        return (void *)PyThreadState_Get()->context;
    #endif
    }

    #ifndef Py_LIMITED_API
    /* Ready's am_send: PyIter_Send (the awaits of 3.10 and 3.11, and of
       compiled coroutines) takes the result without a StopIteration. */
    static PySendResult dis_ready_am_send(PyObject *self, PyObject *arg, PyObject **result) {
        PyObject *value = ((DisReadyLayout *)self)->value;
        (void)arg;
        Py_INCREF(value);
        *result = value;
        return PYGEN_RETURN;
    }
    #endif

    #ifndef Py_LIMITED_API
    /* Pending's slots: the compiled coroutine it runs is driven through its
       am_send, so neither its result nor Pending's needs a StopIteration of
       its own, and no awaitable wrapper is made for the await. */
    typedef struct { PyObject_HEAD PyObject *coro; } DisPendingLayout;

    static PyObject *dis_pending_iternext(PyObject *self) {
        PyObject *result = NULL;
        PySendResult sent = PyIter_Send(((DisPendingLayout *)self)->coro, Py_None, &result);
        if (sent == PYGEN_NEXT) {
            return result;
        }
        if (sent == PYGEN_RETURN) {
            return dis_return_value(result);
        }
        return NULL;
    }

    static PySendResult dis_pending_am_send(PyObject *self, PyObject *arg, PyObject **result) {
        return PyIter_Send(((DisPendingLayout *)self)->coro, arg, result);
    }
    #endif

    static int dis_install_pending_slots(PyObject *type) {
    #ifdef Py_LIMITED_API
        (void)type;
        return 0;
    #else
        PyTypeObject *cls = (PyTypeObject *)type;
        if (cls->tp_basicsize != (Py_ssize_t)sizeof(DisPendingLayout) || cls->tp_as_async == NULL) {
            return 0;  /* an unexpected layout: keep the Cython methods */
        }
        cls->tp_iternext = dis_pending_iternext;
        cls->tp_as_async->am_send = dis_pending_am_send;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
        cls->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        PyType_Modified(cls);
        return 1;
    #endif
    }

    /* One step of an awaitable: 0 when ``step`` suspended (``*out``: what it
       yields), 1 when it returned (``*out``: its result), 2 when it raised
       StopAsyncIteration (cleared), 3 when it raised anything else (``*out``:
       the exception, cleared).  Nothing is left raised. */
    static int dis_send(PyObject *step, PyObject *arg, PyObject **out) {
        PySendResult sent = PyIter_Send(step, arg, out);
        if (sent == PYGEN_NEXT) {
            return 0;
        }
        if (sent == PYGEN_RETURN) {
            return 1;
        }
        if (PyErr_ExceptionMatches(PyExc_StopAsyncIteration)) {
            PyErr_Clear();
            return 2;
        }
    #if PY_VERSION_HEX >= 0x030C0000
        *out = PyErr_GetRaisedException();
    #else
        {
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyErr_NormalizeException(&type, &value, &traceback);
            if (traceback != NULL) {
                PyException_SetTraceback(value, traceback);
            }
            Py_XDECREF(type);
            Py_XDECREF(traceback);
            *out = value;
        }
    #endif
        return 3;
    }

    /* A finalising awaitable's step (``_finalising_advance``): 0 when it
       suspends (``*out``: what it yields), 1 when the close is done, -1 on an
       error.  Set once, when the module initialises. */
    static int (*dis_finalising_advance)(PyObject *, PyObject *, PyObject **) = NULL;

    #ifndef Py_LIMITED_API
    static PyObject *dis_finalising_iternext(PyObject *self) {
        PyObject *out = NULL;
        if (dis_finalising_advance(self, Py_None, &out) == 0) {
            return out;
        }
        return NULL;  /* done (the result is None), or the error */
    }

    static PySendResult dis_finalising_am_send(PyObject *self, PyObject *arg, PyObject **result) {
        int advanced = dis_finalising_advance(self, arg, result);
        if (advanced == 0) {
            return PYGEN_NEXT;
        }
        if (advanced == 1) {
            Py_INCREF(Py_None);
            *result = Py_None;
            return PYGEN_RETURN;
        }
        *result = NULL;
        return PYGEN_ERROR;
    }
    #endif

    static int dis_install_finalising_slots(PyObject *type, void *advance) {
        dis_finalising_advance = (int (*)(PyObject *, PyObject *, PyObject **))advance;
    #ifdef Py_LIMITED_API
        (void)type;
        return 0;
    #else
        PyTypeObject *cls = (PyTypeObject *)type;
        if (cls->tp_as_async == NULL) {
            return 0;
        }
        cls->tp_iternext = dis_finalising_iternext;
        cls->tp_as_async->am_send = dis_finalising_am_send;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
        cls->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        PyType_Modified(cls);
        return 1;
    #endif
    }

    static int dis_install_ready_iternext(PyObject *type) {
    #ifdef Py_LIMITED_API
        (void)type;
        return 0;
    #else
        PyTypeObject *cls = (PyTypeObject *)type;
        if (cls->tp_basicsize != (Py_ssize_t)sizeof(DisReadyLayout)) {
            return 0;  /* an unexpected layout: keep the Cython method */
        }
        cls->tp_iternext = dis_ready_iternext;
        if (cls->tp_as_async != NULL) {
            cls->tp_as_async->am_send = dis_ready_am_send;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
            cls->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        }
        PyType_Modified(cls);
        return 1;
    #endif
    }
    """
    const bint DIS_CONTEXTVAR_API
    int DIS_ContextVar_Get(object var, PyObject** out) except -1
    object DIS_ContextVar_Set(object var, object value)
    int DIS_ContextVar_Reset(object var, object token) except -1
    bint DIS_HAS_AM_AWAIT(object obj)
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    PyObject* PyErr_Occurred() noexcept
    PyObject* PyIter_Next(object iterator) except? NULL
    int Py_GetRecursionLimit()
    int Py_EnterRecursiveCall(const char* where) except -1
    void Py_LeaveRecursiveCall()
    int dis_install_ready_iternext(object type) except -1
    int dis_install_pending_slots(object type) except -1
    int dis_install_finalising_slots(object type, void* advance) except -1
    int dis_send(object step, object arg, PyObject** out) noexcept
    void dis_release_stop()
    void* dis_current_context()

# asyncio.current_task() is a Python function before 3.12: read the C
# implementation's table of current tasks directly there.
cdef object _current_task_function = _asyncio_tasks.current_task
cdef dict _current_tasks = (
    getattr(_asyncio_tasks, "_current_tasks", None)
    if type(_current_task_function) is FunctionType
    else None
)


cdef inline object _current_task():
    """The running task of this thread's running loop (one must run)."""
    cdef PyObject* task
    if _current_tasks is not None:
        task = PyDict_GetItemWithError(_current_tasks, _get_running_loop_or_raise())
        return <object>task if task is not NULL else None
    return _current_task_function()


_current = ContextVar("dependency_injector_scoped.scope", default=None)
_creating = ContextVar("dependency_injector_scoped.creating", default=None)
# Without the C API, bound methods cached once are about half the cost of
# ``_current.get()``.
cdef object _current_var = _current
cdef object _current_get = _current.get
cdef object _current_set = _current.set
cdef object _current_reset = _current.reset
cdef object _creating_var = _creating
cdef object _creating_get = _creating.get
cdef object _creating_set = _creating.set
cdef object _creating_reset = _creating.reset


cdef inline object _var_get(object var, object fallback):
    cdef PyObject* value
    if DIS_CONTEXTVAR_API:
        DIS_ContextVar_Get(var, &value)
        result = <object>value
        Py_DECREF(result)
        return result
    return fallback()


cdef inline object _var_set(object var, object fallback, object value):
    if DIS_CONTEXTVAR_API:
        return DIS_ContextVar_Set(var, value)
    return fallback(value)


cdef inline int _var_reset(object var, object fallback, object token) except -1:
    if DIS_CONTEXTVAR_API:
        DIS_ContextVar_Reset(var, token)
    else:
        fallback(token)


cdef object current_scope():
    return _var_get(_current_var, _current_get)


cdef object set_current(object scope):
    return _var_set(_current_var, _current_set, scope)


cdef inline int _lookup_failed() except -1:
    """-1 (raising it) if the unchecked table lookup before a creation raised."""
    return -1 if PyErr_Occurred() is not NULL else 0


# Asynchronous creations count their depth (see Scope.begin); the recursion
# limit is read only past this one, which no realistic limit is below.
cdef enum:
    SHALLOW_DEPTH = 64


cdef int reset_current(object token) except -1:
    _var_reset(_current_var, _current_reset, token)


cdef Creation current_creation():
    """The innermost creation in progress here: this thread's, this task's, else this context's."""
    cdef Creation top = _sync_top
    cdef PyObject* entry
    if top is not None and not top.finished and top.thread == PyThread_get_thread_ident():
        return top
    if _task_top and _get_running_loop() is not None:
        entry = PyDict_GetItemWithError(_task_top, _current_task())
        if entry is not NULL:
            return <Creation>entry
    return <Creation>_var_get(_creating_var, _creating_get)


# The innermost synchronous creation, with the thread that runs it.  Kept in a
# plain global rather than the context: a context-variable update costs as
# much as the rest of a creation.  Threads interleave, so it is trusted only
# when it is this thread's and unfinished; a stale value just names a shorter
# chain.  Asynchronous creations (whose child tasks inherit the context) are
# recorded in the context.
cdef Creation _sync_top = None
# The innermost asynchronous creation of each task that has one.  Only a
# creation about to await its initializer's own code (which may start child
# tasks, inheriting the context) is also recorded in the context
# (:meth:`Creation.record`); one that only awaits its dependencies is not.
cdef dict _task_top = {}


def get_current_scope():
    """Return the innermost :class:`Scope` current in this context, or ``None``.

    While a scope closes it is still current, so finalisers resolve in it.
    """
    return current_scope()


# Awaitables ---------------------------------------------------------------

# dependency-injector's rule: asyncio futures and coroutines.  Any awaitable
# type fills the ``am_await`` slot, so most values are told apart by one slot
# read; nothing is cached, so no user class is kept alive.
cdef tuple _COROUTINE_TYPES = (CoroutineType, _AbcCoroutine)


cdef bint is_awaitable(object value) except -1:
    if not DIS_HAS_AM_AWAIT(value):
        return False
    if type(value) is Ready or type(value) is Pending or type(value) is CoroutineType:
        return True
    return hasattr(type(value), "_asyncio_future_blocking") or isinstance(value, _COROUTINE_TYPES)


@cython.final
@cython.freelist(32)
cdef class Ready:
    """An awaitable whose result is already known: awaiting it never suspends.

    It may be awaited any number of times.  It also answers the coroutine
    protocol (``send``/``throw``/``close``), so ``asyncio.ensure_future`` and
    dependency-injector's own async injections accept it.
    """

    def __await__(self):
        return self

    def __next__(self):
        raise StopIteration(self.value)

    def send(self, value):
        """Finish at once with the known result."""
        raise StopIteration(self.value)

    def throw(self, typ, value=None, traceback=None):
        """Raise the given exception: there is nothing to interrupt."""
        if value is None:
            raise typ
        raise value

    def close(self):
        """Nothing to close."""

    def __repr__(self):
        return f"<Ready {self.value!r}>"


_AbcCoroutine.register(Ready)
dis_install_ready_iternext(Ready)


@cython.final
@cython.freelist(16)
cdef class Pending:
    """The awaitable a call returns while its result still has to be created.

    It runs one of this package's compiled coroutines.  Awaited from Python
    code it drives that coroutine directly: no awaitable wrapper, and the
    result comes back without a ``StopIteration`` of its own.  It answers the
    coroutine protocol, so tasks, ``asyncio.gather`` and ``ensure_future``
    take it as they take a coroutine.
    """

    def __await__(self):
        return self

    def __next__(self):
        return self.coro.send(None)

    def send(self, value):
        """Resume the creation with ``value``."""
        return self.coro.send(value)

    def throw(self, typ, value=None, traceback=None):
        """Raise an exception in the creation where it waits."""
        if traceback is not None:
            return self.coro.throw(typ, value, traceback)
        if value is not None:
            return self.coro.throw(typ, value)
        return self.coro.throw(typ)

    def close(self):
        """Stop the creation, releasing what it marked."""
        return self.coro.close()

    @property
    def __qualname__(self):
        """The creating coroutine's name, which asyncio shows in a task's repr."""
        return self.coro.__qualname__

    def __repr__(self):
        return f"<Pending {self.coro!r}>"


_AbcCoroutine.register(Pending)
dis_install_pending_slots(Pending)


cdef Pending awaiting(object coro):
    """Wrap a compiled coroutine for a caller outside this package."""
    cdef Pending result = Pending.__new__(Pending)
    result.coro = coro
    return result


_AbcCoroutine.register(_Closing)


cdef inline object _taken(PyObject* out):
    """The object of a new reference (the reference is taken over)."""
    result = <object>out
    Py_DECREF(result)
    return result


cdef object _finalising(Scope scope, Closer closer, bint detach):
    cdef _Closing result = _Closing.__new__(_Closing)
    result.detach = detach
    result.scope = scope
    result.closer = closer
    result.step = next_step(closer.obj)
    result.stepping = True
    return result


cdef int _finalising_advance(object awaitable, object value, PyObject** out) except -1:
    """Send ``value`` to the finaliser: 0 when it suspends (``out``), 1 when the close is done."""
    cdef _Closing self = <_Closing>awaitable
    if self.step is None:
        raise RuntimeError("cannot reuse the already awaited close of a scope")
    out[0] = NULL
    cdef int sent = dis_send(self.step, value, out)
    if sent == 0:
        return 0
    outcome = None
    if out[0] is not NULL:
        outcome = _taken(out[0])
        out[0] = NULL
    return _finalising_stepped(self, sent, outcome, out)


cdef int _finalising_stepped(_Closing self, int sent, object outcome, PyObject** out) except -1:
    """Go on from a step that ended (``sent`` and ``outcome`` as :c:func:`dis_send` reports them)."""
    if not self.stepping:
        # The coroutine that closes an unstopped generator finished the scope.
        self.step = None
        if sent == 3:
            raise outcome
        return 1
    if sent == 1:
        # The generator yielded again instead of stopping.
        self.stepping = False
        self.step = _close_unstopped(self.scope, self, self.closer)
        return _finalising_advance(self, None, out)
    self.step = None
    if sent == 3:
        self.failed(self.closer.provider, outcome)
    self.closer = None
    self.scope._finish(self)
    return 1


dis_install_finalising_slots(_Closing, <void*>_finalising_advance)


async def _close_unstopped(Scope scope, _Closing closing, Closer closer):
    """Finish a close whose async generator yielded again instead of stopping."""
    try:
        await closer.obj.aclose()
        raise generator_error(closer.provider, True, False)
    except BaseException as error:
        closing.failed(closer.provider, error)
    scope._finish(closing)


cdef extern from *:
    """
    /* The awaitable of an async iterator's next step, from its type's slot:
       no ``anext`` wrapper (NULL without an error when there is no slot). */
    static PyObject *dis_anext_step(PyObject *obj) {
    #ifdef Py_LIMITED_API
        unaryfunc anext = (unaryfunc)PyType_GetSlot(Py_TYPE(obj), Py_am_anext);
    #else
        unaryfunc anext = Py_TYPE(obj)->tp_as_async != NULL ? Py_TYPE(obj)->tp_as_async->am_anext : NULL;
    #endif
        if (anext == NULL) {
            return NULL;
        }
        return anext(obj);
    }
    """
    PyObject* dis_anext_step(object obj) except? NULL

# Looked up once: Cython would look the builtin up at every call.
cdef object _anext = anext
cdef object _END = object()


cdef object next_step(object obj):
    """The awaitable of an async iterator's next value; it raises StopAsyncIteration at the end."""
    cdef PyObject* step = dis_anext_step(obj)
    if step is NULL:
        return _anext(obj)
    result = <object>step
    Py_DECREF(result)
    return result


cdef Ready ready(object value):
    cdef Ready result = Ready.__new__(Ready)
    result.value = value
    return result


# What a close that had nothing to await returns (a Ready holds no state).
cdef Ready _READY_NONE = ready(None)


# Plans --------------------------------------------------------------------

# Bumped whenever an override may have changed some container's scoped graph;
# a plan made before the last bump is made again at the next scope.
cdef Py_ssize_t _generation = 0


def invalidate_plans():
    """Make every container check its scoped graph again at its next scope."""
    global _generation
    _generation += 1


def plan_generation():
    """The generation a plan made now belongs to."""
    return _generation


@cython.final
cdef class Plan:
    """What a container's scopes need to know, computed once per container.

    ``eager`` lists the resources created when a scope opens, ``members`` the
    scoped providers the container's scopes serve (``None``: any).
    """

    def __init__(self, eager=(), members=None, container_label="the container", generation=None):
        self.eager = tuple(eager)
        self.members = frozenset(members) if members is not None else None
        self.container_label = container_label
        self.generation = _generation if generation is None else generation

    @property
    def is_current(self):
        """Whether no override happened since the plan was made."""
        return self.generation == _generation


# Closers ------------------------------------------------------------------

@cython.final
@cython.freelist(16)
cdef class Closer:
    """Finalises one resource with the exception that ends its scope (or ``None``)."""

    cdef int close(self, object exc) except -1:
        """Run a synchronous finaliser."""
        cdef PyObject* extra
        cdef int kind = self.kind
        if kind == CLOSE_GENERATOR:
            if exc is None:
                # PyIter_Next reports exhaustion without raising StopIteration.
                extra = PyIter_Next(self.obj)
                if extra is NULL:
                    return 0
                Py_DECREF(<object>extra)
            else:
                try:
                    self.obj.throw(exc)
                except StopIteration:
                    return 0
            self.obj.close()
            raise generator_error(self.provider, False, False)
        elif kind == CLOSE_CONTEXT_MANAGER:
            if exc is None:
                self.obj.__exit__(None, None, None)
            else:
                self.obj.__exit__(type(exc), exc, exc.__traceback__)
        elif kind == CLOSE_RESOURCE:
            self.obj.shutdown(self.value)
        elif kind == CLOSE_RESOURCE_WITH_ERROR:
            self.obj.shutdown(self.value, exc)
        else:
            raise ScopeError(
                f"{describe(self.provider)} has an asynchronous finaliser and cannot be "
                "closed by a synchronous scope: use `async with container.scope():`."
            )

    async def aclose(self, exc):
        """Run the finaliser, awaiting it when it is asynchronous."""
        cdef int kind = self.kind
        if kind == CLOSE_ASYNC_GENERATOR:
            if exc is None:
                if await _anext(self.obj, _END) is _END:
                    return
            else:
                try:
                    await self.obj.athrow(exc)
                except StopAsyncIteration:
                    return
            await self.obj.aclose()
            raise generator_error(self.provider, True, False)
        elif kind == CLOSE_ASYNC_CONTEXT_MANAGER:
            if exc is None:
                await self.obj.__aexit__(None, None, None)
            else:
                await self.obj.__aexit__(type(exc), exc, exc.__traceback__)
        elif kind == CLOSE_ASYNC_RESOURCE:
            await self.obj.shutdown(self.value)
        elif kind == CLOSE_ASYNC_RESOURCE_WITH_ERROR:
            await self.obj.shutdown(self.value, exc)
        else:
            self.close(exc)

    cdef object discard(self, object error):
        """Finalise at once a resource whose scope closed while it was created.

        Returns an awaitable for an asynchronous finaliser, else ``None``.
        """
        if self.kind > 10:
            return _discard_async(self, error)
        try:
            self.close(error)
        except BaseException as failure:
            if failure is not error:
                raise
        return None

    @property
    def is_async(self):
        """Whether the finaliser must be awaited."""
        return self.kind > 10


async def _discard_async(Closer closer, error):
    try:
        await closer.aclose(error)
    except BaseException as failure:
        if failure is not error:
            raise


cdef Closer new_closer(object provider, int kind, object obj, object value, bint in_thread):
    cdef Closer closer = Closer.__new__(Closer)
    closer.provider = provider
    closer.kind = kind
    closer.obj = obj
    closer.value = value
    closer.in_thread = in_thread
    return closer


@cython.final
@cython.freelist(8)
cdef class _Closing:
    """One close of a scope: what each finaliser receives, and what failed.

    As with :class:`contextlib.ExitStack`, a finaliser that raises hands its
    error to the finalisers that run after it.

    When the scope's one finaliser is an async generator and nothing failed
    (the common case of a request: one session), the close is also its own
    awaitable (:func:`_finalising`).  It steps the generator itself, as
    :class:`Pending` steps a coroutine, then finishes the scope: no coroutine
    of its own and no ``anext`` wrapper.  A generator that yields again is
    closed by a coroutine, which it then runs.
    """

    def __await__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, value):
        """Resume the finaliser with ``value``."""
        cdef PyObject* out = NULL
        if _finalising_advance(self, value, &out) == 0:
            return _taken(out)
        raise StopIteration

    def throw(self, typ, value=None, traceback=None):
        """Raise an exception in the finaliser where it waits."""
        cdef PyObject* out = NULL
        cdef int sent
        if self.step is None:
            if value is None:
                raise typ
            raise value
        try:
            if traceback is not None:
                outcome = self.step.throw(typ, value, traceback)
            elif value is not None:
                outcome = self.step.throw(typ, value)
            else:
                outcome = self.step.throw(typ)
            sent = 0
        except StopIteration as stop:
            outcome = stop.value
            sent = 1
        except StopAsyncIteration:
            outcome = None
            sent = 2
        except BaseException as error:
            outcome = error
            sent = 3
        if sent == 0:
            return outcome
        if _finalising_stepped(self, sent, outcome, &out) == 0:
            return _taken(out)
        raise StopIteration

    def close(self):
        """Interrupt the finaliser with ``GeneratorExit``; the scope finishes closing."""
        if self.step is None:
            return
        try:
            self.throw(GeneratorExit)
        except (GeneratorExit, StopIteration):
            return
        raise RuntimeError("the scope's finaliser ignored GeneratorExit")

    def __repr__(self):
        return f"<closing {self.scope!r}>"

    cdef int run(self, Closer closer) except -1:
        try:
            closer.close(self.current)
        except BaseException as error:
            self.failed(closer.provider, error)

    cdef int failed(self, object provider, object error) except -1:
        if error is self.current:
            return 0  # the finaliser re-raised what it was given
        if self.current is not None and error.__context__ is None:
            error.__context__ = self.current
        if self.errors is None:
            self.errors = []
        self.errors.append((provider, error))
        self.current = error

    def run_all(self, list closers):
        """Run synchronous finalisers in order (in a worker thread)."""
        for closer in closers:
            self.run(<Closer>closer)


# Creations ----------------------------------------------------------------

# Threads and tasks blocked on a creation, by thread ident or task: the
# creation each waits for, so a wait that would close a cycle raises.
cdef dict _waiting = {}
# Threads blocked on another thread's creation wait on one condition; a
# finished creation notifies only when somebody waits.
cdef object _settled = Condition()
cdef Py_ssize_t _blocked = 0


cdef inline object _owner(Creation creation):
    return creation.task if creation.task is not None else creation.thread


@cython.final
@cython.freelist(16)
cdef class Creation:
    """Marks an instance being created, so it is created exactly once.

    Put in the scope's instance table by :meth:`Scope.begin` and replaced by
    the instance (:meth:`Scope.settle`) or removed (:meth:`Scope.abandon`)
    on every path out of the creation.
    """

    cdef int release(self) except -1:
        """Restore what the creation changed (its owner only, once)."""
        global _sync_top
        cdef PyObject* entry
        if self._scope_token is not None:
            reset_current(self._scope_token)
            self._scope_token = None
        if self._creating_token is not None:
            _var_reset(_creating_var, _creating_reset, self._creating_token)
            self._creating_token = None
        if self.task is not None:
            if self._tracked:
                # Creations of one task nest, so this one is its innermost,
                # unless it is abandoned out of turn (a coroutine dropped
                # half-way and closed by the garbage collector).
                self._tracked = False
                entry = PyDict_GetItemWithError(_task_top, self.task)
                if entry is not NULL and <object>entry is self:
                    if self._previous is None:
                        PyDict_DelItem(_task_top, self.task)
                    else:
                        PyDict_SetItem(_task_top, self.task, self._previous)
                self._previous = None
        elif self.depth:
            self.depth = 0
            Py_LeaveRecursiveCall()
            if _sync_top is self:
                _sync_top = self._previous
            self._previous = None

    cdef int record(self) except -1:
        """Record the creation in the context before its initializer's code is awaited.

        A child task started by that code inherits the record, so resolving
        this provider (or one it is created for) from there is a cycle.
        """
        if self._creating_token is None and not self.finished:
            self._creating_token = _var_set(_creating_var, _creating_set, self)

    cdef int finish(self, object error, bint retry) except -1:
        """Wake everything that waits for this creation."""
        if self.finished:
            return 0
        self.finished = True
        self.error = error
        self.retry = retry
        if self.waiters is not None:
            waiters, self.waiters = self.waiters, None
            for future in waiters:
                try:
                    future.get_loop().call_soon_threadsafe(_wake, future)
                except RuntimeError:  # its loop is closed: nobody is waiting any more
                    pass
        if _blocked:
            with _settled:
                _settled.notify_all()

    cdef object _cycle(self, object waiter):
        """The circular-dependency error if ``waiter`` waiting for this creation never ends."""
        cdef Creation link = current_creation()
        cdef list chain = []
        while link is not None:
            chain.append(link.provider)
            if link is self:
                chain.reverse()
                chain.append(self.provider)
                return _circular(chain)
            link = link.outer
        # A wait for a creation whose owner waits, through others, for this waiter.
        cdef Creation blocking = self
        cdef Py_ssize_t hops = 0
        chain = [self.provider]
        while blocking is not None and hops < 1000:
            owner = _owner(blocking)
            if owner == waiter:
                chain.append(self.provider)
                return _circular(chain)
            blocking = _waiting.get(owner)
            if blocking is not None:
                chain.append(blocking.provider)
            hops += 1
        return None

    cdef int wait(self) except -1:
        """Block this thread until the creation finishes (another thread's creation)."""
        global _blocked
        cdef unsigned long thread = PyThread_get_thread_ident()
        cycle = self._cycle(thread)
        if cycle is not None:
            raise cycle
        if self.thread == thread:
            if self.task is not None:
                raise ScopeError(
                    f"{describe(self.provider)} is being created asynchronously on this "
                    "thread's event loop and cannot be waited for synchronously here: "
                    "await it instead."
                )
            raise _circular([self.provider, self.provider])
        if _get_running_loop() is not None:
            raise ScopeError(
                f"{describe(self.provider)} is being created by another thread; waiting "
                "for it here would block the event loop. Await "
                f"`{_attribute(self.provider)}.async_()` instead, or resolve it in the "
                "thread that creates it."
            )
        _waiting[thread] = self
        _blocked += 1
        try:
            with _settled:
                while not self.finished:
                    # The timeout only bounds a lost wake-up.
                    _settled.wait(0.05)
        finally:
            _blocked -= 1
            del _waiting[thread]
        if self.error is not None and not self.retry:
            raise self.error

    async def wait_async(self):
        """Suspend this task until the creation finishes, without blocking the loop."""
        task = _current_task()
        if self.task is not None and self.task is task:
            raise _circular([self.provider, self.provider])
        cycle = self._cycle(task)
        if cycle is not None:
            raise cycle
        if not self.finished:
            future = _get_running_loop_or_raise().create_future()
            if self.waiters is None:
                self.waiters = []
            self.waiters.append(future)
            if self.finished:
                # Another thread finished it while this task registered.
                _wake(future)
            _waiting[task] = self
            try:
                await future
            finally:
                _waiting.pop(task, None)
        if self.error is not None and not self.retry:
            raise self.error


def _wake(future):
    if not future.done():
        future.set_result(None)


cdef object _not_current(Scope scope):
    return ScopeError(
        f"{scope!r} is not the current scope here: close nested scopes first, in the "
        "context that opened them; a child task or thread cannot close its parent's scope."
    )


cdef object _eager_async_in_sync(object provider):
    return ScopeError(
        f"{describe(provider)} is asynchronous and cannot be created by a "
        "synchronous scope: use `async with container.scope():`."
    )


cdef object _circular(list chain):
    path = " -> ".join(_attribute(provider) for provider in chain)
    return ScopeError(
        f"Circular dependency: {path}. {describe(chain[0])} was resolved again while "
        "it was being created."
    )


# The scope token -----------------------------------------------------------

cdef Scope new_scope(object container, object name, object values, Plan plan):
    cdef Scope scope = Scope.__new__(Scope)
    scope.container = container
    scope.name = name
    scope._values = values
    scope._instances = {}
    scope._plan = plan
    return scope


@cython.final
@cython.freelist(8)
cdef class Scope:
    """Scope(container=None, name=None, values=None)
--

    A scope token: one instance of every scoped provider, finalised on exit.

    Get one from ``container.scope(name=None, *, values=None)`` and use it
    once, in one of three ways::

        with container.scope() as scope: ...
        async with container.scope() as scope: ...
        scope = container.scope(); scope.init(); ...; scope.shutdown(exc=None)

    ``init()`` makes the scope current in this context and creates its eager
    resources; ``shutdown()`` finalises what the scope created, in reverse
    order, delivering ``exc`` to each finaliser.  Called while an event loop
    runs in this thread, both return awaitables and the scope is asynchronous,
    as with ``async with``; otherwise they work at once and return ``None``.
    """

    def __init__(self, container=None, name=None, values=None):
        self.container = container
        self.name = name
        self._values = dict(values) if values else None
        self._instances = {}

    def __repr__(self):
        state = ("new", "open", "closing", "closed")[self.state]
        name = "" if self.name is None else f" {self.name!r}"
        return f"<Scope{name} {state}, {len(self._instances)} instances>"

    def __copy__(self):
        raise TypeError(_NOT_COPIED)

    def __deepcopy__(self, memo):
        raise TypeError(_NOT_COPIED)

    def __reduce__(self):
        raise TypeError(_NOT_COPIED)

    def __reduce_ex__(self, protocol):
        raise TypeError(_NOT_COPIED)

    # The three ways to use a scope --------------------------------------

    def __enter__(self):
        self._open(MODE_SYNC)
        self._open_eager()
        return self

    def __exit__(self, exc_type, exc, traceback):
        self._close(exc, False, True)
        return False

    def __aenter__(self):
        self._open(MODE_ASYNC)
        opening = self._open_eager()
        return ready(self) if opening is None else awaiting(opening)

    def __aexit__(self, exc_type, exc, traceback):
        closing = self._close(exc, True, True)
        return _READY_NONE if closing is None else closing

    def init(self):
        """Open the scope in this context and create its eager resources.

        Returns an awaitable when an event loop runs in this thread.
        """
        if _get_running_loop() is None:
            self._open(MODE_SYNC)
            self._open_eager()
            return None
        return self.__aenter__()

    def shutdown(self, exc=None):
        """Finalise the scope's resources with ``exc`` and leave it.

        Returns an awaitable when an event loop runs in this thread.  After a
        clean close, finaliser errors are raised together as
        :class:`~dependency_injector_scoped.errors.FinalizerError`; when
        ``exc`` is given they are logged and added to it as notes.
        """
        if _get_running_loop() is None:
            self._close(exc, False, True)
            return None
        return self.__aexit__(None, exc, None)

    def _close_in_place(self, exc=None):
        """Finalise like ``shutdown()``, but leave the closed scope current.

        For integrations: code that runs later in the same context (a
        response's background tasks) gets ``ScopeClosedError`` instead of
        another scope's instances.  Call ``_leave()`` afterwards.
        """
        closing = self._close(exc, _get_running_loop() is not None, False)
        return _READY_NONE if closing is None else closing

    def _leave(self):
        """Restore the context as it was before the scope opened (after ``_close_in_place``)."""
        if self._token is not None:
            self._detach()

    # Introspection --------------------------------------------------------

    @property
    def values(self):
        """The values given when the scope was created (a copy; empty once closed)."""
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
        entry = self._instances.get(provider, Creation)
        return entry is not Creation and type(entry) is not Creation

    # The table, for the providers -------------------------------------------

    cdef PyObject* value_of(self, object key):
        """The value given for ``key`` when the scope opened, or NULL."""
        if self._values is None:
            return NULL
        return PyDict_GetItemWithError(self._values, key)

    cdef Ready keep_ready(self, object provider, object value):
        """Keep ``provider``'s instance as a ``Ready`` from now on, and return it."""
        cdef Ready result = ready(value)
        PyDict_SetItem(self._instances, provider, result)
        return result

    cdef Scope bound(self, object name):
        """This scope or the nearest enclosing one named ``name``, or None.

        Only named scopes are visited: each scope knows the nearest named one
        above it, so unnamed nesting costs nothing.
        """
        cdef Scope scope = self if self.name is not None else self._named_above
        while scope is not None:
            if scope.name is name or scope.name == name:
                return scope
            scope = scope._named_above
        return None

    cdef Creation begin(self, object provider, bint rebind, bint asynchronous):
        """Mark ``provider`` as being created here, by this thread or task.

        ``rebind`` makes this scope current while the creation runs: a
        provider bound to an outer scope resolves its dependencies from it.
        """
        cdef Creation outer
        cdef Creation creation
        cdef PyObject* entry
        _lookup_failed()
        if self.state != STATE_OPEN:
            raise self.closed_error(provider)
        global _sync_top
        if asynchronous:
            task = _current_task()
            outer = _sync_top
            if outer is None or outer.finished or outer.thread != PyThread_get_thread_ident():
                entry = PyDict_GetItemWithError(_task_top, task) if task is not None else NULL
                outer = <Creation>entry if entry is not NULL else <Creation>_var_get(
                    _creating_var, _creating_get
                )
        else:
            outer = current_creation()
        creation = Creation.__new__(Creation)
        creation.provider = provider
        creation.scope = self
        creation.outer = outer
        creation.thread = PyThread_get_thread_ident()
        if asynchronous:
            # A coroutine's depth is counted here: the C stack it runs on
            # unwinds at every suspension.
            creation.depth = 1 if outer is None else outer.depth + 1
            if creation.depth > SHALLOW_DEPTH and creation.depth > Py_GetRecursionLimit():
                raise RecursionError(
                    f"maximum recursion depth exceeded while creating {describe(provider)}"
                )
            creation.task = task
            if task is not None:
                if outer is not None and outer.task is task:
                    creation._previous = outer
                PyDict_SetItem(_task_top, task, creation)
                creation._tracked = True
        else:
            Py_EnterRecursiveCall(" while creating a scoped instance")
            creation.depth = 1
            creation._previous = _sync_top
            _sync_top = creation
        PyDict_SetItem(self._instances, provider, creation)
        self._pending += 1
        if asynchronous and creation.task is None:
            creation._creating_token = _var_set(_creating_var, _creating_set, creation)
        if rebind:
            creation._scope_token = set_current(self)
        return creation

    cdef Creation begin_inner(self, object provider, bint rebind, Creation outer):
        """:meth:`begin` for a creation made by the coroutine creating ``outer``.

        The coroutine creates a graph depth first, so ``outer`` is its task's
        innermost creation and the new one nests in it: same thread, same task.
        """
        if outer.task is None or outer.finished:
            return self.begin(provider, rebind, True)
        _lookup_failed()
        if self.state != STATE_OPEN:
            raise self.closed_error(provider)
        cdef Creation creation = Creation.__new__(Creation)
        creation.provider = provider
        creation.scope = self
        creation.outer = outer
        creation.thread = outer.thread
        creation.depth = outer.depth + 1
        if creation.depth > SHALLOW_DEPTH and creation.depth > Py_GetRecursionLimit():
            raise RecursionError(
                f"maximum recursion depth exceeded while creating {describe(provider)}"
            )
        # Not recorded as the task's innermost: what looks it up (a coroutine
        # or a synchronous creation started from this frame's initializer)
        # nests in ``outer``'s chain all the same.
        creation.task = outer.task
        PyDict_SetItem(self._instances, provider, creation)
        self._pending += 1
        if rebind:
            creation._scope_token = set_current(self)
        return creation

    cdef int settle(self, Creation creation, object value) except -1:
        """Store the created instance in place of its mark."""
        creation.release()
        self._pending -= 1
        if self.state != STATE_OPEN:
            error = self.closed_error(creation.provider)
            creation.finish(error, False)
            raise error
        PyDict_SetItem(self._instances, creation.provider, value)
        creation.finish(None, False)

    cdef int abandon(self, Creation creation, object error) except -1:
        """Remove the mark of a creation that failed; a later resolution creates again.

        Waiters share the error, except a cancellation or a closed coroutine,
        which was the creator's own: they retry.
        """
        creation.release()
        self._pending -= 1
        cdef PyObject* entry = PyDict_GetItemWithError(self._instances, creation.provider)
        if entry is not NULL and <object>entry is creation:
            del self._instances[creation.provider]
        creation.finish(error, error is None or isinstance(error, _RETRIED))

    cdef bint add_closer(self, Closer closer) except -1:
        """Register a finaliser; False if the scope is no longer open (discard it then)."""
        if self.state != STATE_OPEN:
            return False
        if self._closers is not None:
            self._closers.append(closer)
        elif self._closer is None:
            # One finaliser, the common case, needs no list.
            self._closer = closer
        else:
            self._closers = [self._closer, closer]
            self._closer = None
        return True

    cdef inline bint _has_closers(self):
        return self._closer is not None or bool(self._closers)

    cdef inline Closer _last_closer(self):
        """The finaliser to run next (the last one registered)."""
        return self._closer if self._closer is not None else <Closer>self._closers[-1]

    cdef inline Closer _pop_closer(self):
        cdef Closer closer = self._closer
        if closer is not None:
            self._closer = None
            return closer
        return <Closer>self._closers.pop()

    cdef object closed_error(self, object provider):
        if self.state == STATE_CLOSING:
            return ScopeClosedError(
                f"{describe(provider)} has no instance in {self!r}, which is closing: a "
                "finaliser can resolve the instances its scope already holds, not create "
                "new ones."
            )
        return ScopeClosedError(
            f"{describe(provider)} was resolved through {self!r}, which has closed: this "
            "task, thread or background job outlived its scope. Open a scope of its own "
            "for it: `async with container.scope(): ...` (or `with`)."
        )

    # Opening --------------------------------------------------------------

    cdef int _open(self, int mode) except -1:
        if self.state != STATE_NEW:
            raise ScopeError(
                f"{self!r} was already used; a scope token opens once. "
                "Call container.scope() again for a new scope."
            )
        self.mode = mode
        self.parent = current_scope()
        if self.parent is not None:
            self._named_above = (
                self.parent if self.parent.name is not None else self.parent._named_above
            )
        self._token = set_current(self)
        self._context = dis_current_context()
        self.state = STATE_OPEN

    cdef object _open_eager(self):
        """Create the eager resources bound to this scope; an awaitable if some must be awaited."""
        if self._plan is None or not self._plan.eager:
            return None
        if self.mode == MODE_ASYNC:
            return self._open_eager_async()
        for provider in self._plan.eager:
            # Refuse before creating anything when a resource is known to need an await.
            if (
                self._serves_eager(provider)
                and provider.is_async_mode_enabled()
                and provider.last_overriding is None
            ):
                self._close(None, False, True)
                raise _eager_async_in_sync(provider)
        for provider in self._plan.eager:
            if not self._serves_eager(provider):
                continue
            try:
                result = provider()
                if is_awaitable(result) and type(result) is not Ready:
                    _close_quietly(result)
                    raise _eager_async_in_sync(provider)
            except BaseException as error:
                self._close(error, False, True)
                raise
        return None

    async def _open_eager_async(self):
        for provider in self._plan.eager:
            if not self._serves_eager(provider):
                continue
            try:
                result = provider()
                if is_awaitable(result):
                    await result
            except BaseException as error:
                closing = self._close(error, True, True)
                if closing is not None:
                    await closing
                raise
        return self

    def _serves_eager(self, provider):
        scope_name = provider.scope_name
        return scope_name is self.name or scope_name == self.name

    # Closing --------------------------------------------------------------

    cdef object _close(self, object exc, bint asynchronous, bint detach):
        """Run the finalisers from the last; None when done, else an awaitable of the rest.

        The scope stays current while they run (state "closing").  An
        asynchronous close awaits async finalisers and runs synchronous ones
        in a worker thread unless they opted out.
        """
        cdef _Closing closing
        cdef Closer closer
        if self.state != STATE_OPEN:
            if self.state == STATE_NEW:
                raise ScopeError(f"{self!r} is not open: call init() or enter it first.")
            raise ScopeError(f"{self!r} is already closed; a scope closes once.")
        if detach and (
            current_scope() is not self
            or (self._context != NULL and dis_current_context() != self._context)
        ):
            raise _not_current(self)
        if detach and self._context == NULL:
            # No context identity (the limited API): only the context that
            # opened the scope can reset its token.  Ask before finalising.
            try:
                reset_current(self._token)
            except ValueError:
                raise _not_current(self) from None
            self._token = set_current(self)
        self.state = STATE_CLOSING
        closer = self._closer
        if (
            asynchronous
            and exc is None
            and closer is not None
            and closer.kind == CLOSE_ASYNC_GENERATOR
        ):
            # Its only finaliser, and nothing failed: the common case.
            self._closer = None
            return _finalising(self, closer, detach)
        closing = _Closing.__new__(_Closing)
        closing.exc = exc
        closing.current = exc
        closing.detach = detach
        while self._has_closers():
            closer = self._last_closer()
            if asynchronous and (closer.kind > 10 or closer.in_thread):
                return awaiting(self._close_async(closing))
            self._pop_closer()
            closing.run(closer)
        self._finish(closing)
        return None

    async def _close_async(self, _Closing closing):
        cdef Closer closer
        cdef list batch
        while self._has_closers():
            closer = self._pop_closer()
            if closer.kind == CLOSE_ASYNC_GENERATOR and closing.current is None:
                # The common case inline (what Closer.aclose does): no coroutine of its own.
                try:
                    # anext's default ends the generator without an exception to catch.
                    if await _anext(closer.obj, _END) is _END:
                        continue
                    await closer.obj.aclose()
                    raise generator_error(closer.provider, True, False)
                except BaseException as error:
                    closing.failed(closer.provider, error)
            elif closer.kind > 10:
                try:
                    await closer.aclose(closing.current)
                except BaseException as error:
                    closing.failed(closer.provider, error)
            elif closer.in_thread:
                batch = [closer]
                while self._has_closers():
                    closer = self._last_closer()
                    if closer.kind > 10 or not closer.in_thread:
                        break
                    batch.append(self._pop_closer())
                await _in_thread(closing, batch)
            else:
                closing.run(closer)
        self._finish(closing)

    cdef int _finish(self, _Closing closing) except -1:
        """Every exit ends here: drop what the scope held, leave it, report."""
        self.state = STATE_CLOSED
        if self._pending:
            error = self.closed_error(None)
            for entry in list(self._instances.values()):
                if type(entry) is Creation:
                    (<Creation>entry).finish(error, False)
        # A task that outlives the scope may keep the token alive: it must not
        # keep the request's instances and values with it.
        PyDict_Clear(self._instances)
        self._values = None
        self._closer = None
        self._closers = None
        # The last result an await took may be this scope's; nothing keeps it.
        dis_release_stop()
        if closing.detach:
            self._detach()
        _report(closing)

    cdef int _detach(self) except -1:
        token, self._token = self._token, None
        try:
            reset_current(token)
        except ValueError:
            raise ScopeError(
                f"{self!r} must be closed in the context that opened it: a child task or "
                "thread cannot close its parent's scope."
            ) from None

    def __dealloc__(self):
        if self.state == STATE_OPEN and self._has_closers():
            # svcs-style warning: resources held by a scope nobody closed.
            count = len(self._closers) if self._closers is not None else 1
            warn(
                f"A scope was garbage-collected while open: {count} "
                "resource(s) were never finalised. Close scopes with `with`, "
                "`async with` or shutdown().",
                ResourceWarning,
            )


cdef str _NOT_COPIED = (
    "A Scope cannot be copied or pickled: its instances belong to one unit of work. "
    "Open a new scope with container.scope() instead."
)

cdef tuple _RETRIED = (CancelledError, GeneratorExit)


async def _in_thread(_Closing closing, list batch):
    """Run synchronous finalisers in a worker thread, in this context; keep their order."""
    try:
        loop = _get_running_loop_or_raise()
        future = loop.run_in_executor(None, copy_context().run, closing.run_all, batch)
    except RuntimeError:  # no usable executor (the loop is shutting down): run them here
        closing.run_all(batch)
        return
    while True:
        try:
            await _shield(future)
            return
        except CancelledError as error:
            # The finalisers are running: let them finish before the next
            # ones start, then the cancellation propagates.
            closing.failed(None, error)
            if future.done():
                return


cdef int _close_quietly(object obj) except -1:
    close = getattr(obj, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


cdef int _report(_Closing closing) except -1:
    """Raise or attach finaliser errors once every finaliser has run.

    A cancellation, ``KeyboardInterrupt`` or ``SystemExit`` from a finaliser
    propagates, the other errors noted on it.  Otherwise, after a clean exit
    the errors are raised together as one :class:`FinalizerError`; after an
    exception, that exception keeps propagating with each error logged and
    added to it as a note.
    """
    cdef list errors = closing.errors
    if not errors:
        return 0
    for _, error in errors:
        if not isinstance(error, Exception):
            _attach(error, [item for item in errors if item[1] is not error])
            raise error
    if closing.exc is None:
        names = ", ".join(describe(provider) for provider, _ in errors)
        raise FinalizerError(
            f"{len(errors)} finaliser(s) failed while closing the scope: {names}",
            [error for _, error in errors],
        )
    _attach(closing.exc, errors)


cdef int _attach(object exc, list errors) except -1:
    """Log each finaliser error and add it as a note to ``exc``."""
    for provider, error in errors:
        logger.error("Finaliser of %s failed", describe(provider), exc_info=error)
        note = f"While closing the scope, the finaliser of {describe(provider)} failed: {error!r}"
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # pragma: no cover - Python 3.10
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]


# Names in messages ----------------------------------------------------------

cdef str describe(object provider):
    if provider is None:
        return "the scope"
    name = getattr(provider, "_name", None)
    if name:
        return f"{type(provider).__name__} {name!r}"
    try:
        return repr(provider)
    except Exception:  # a provider whose __init__ never ran
        return f"{type(provider).__name__} at {id(provider):#x}"


cdef str _attribute(object provider):
    name = getattr(provider, "_name", None)
    return repr(name) if name else type(provider).__name__


def describe_provider(provider):
    """Name ``provider`` for an error message: its container attribute where known."""
    return describe(provider)


cdef object generator_error(object provider, bint is_async, bint never_yielded):
    """The error for a resource generator that broke the one-``yield`` rule."""
    kind = "async generator" if is_async else "generator"
    broke = "returned without yielding" if never_yielded else "yielded more than once"
    return ScopeError(
        f"The {kind} of {describe(provider)} {broke}; "
        "a resource generator yields exactly one value."
    )


# Opening scopes ---------------------------------------------------------------

def new_scope_for(container, name, values, Plan plan):
    """A new, unopened scope of ``container`` that follows ``plan``."""
    return new_scope(container, name, dict(values) if values else None, plan)


@cython.binding(True)
def open_scope(container, name=None, *, values=None):
    """Return a new, unopened :class:`Scope` of ``container``.

    Bound as ``container.scope()`` on this package's containers.  The
    container's scoped graph is checked, and its plan made, at its first
    scope and again after an override.
    """
    plan = getattr(container, "__scoped_plan__", None)
    if plan is None or (<Plan?>plan).generation != _generation:
        container.check_scopes()
        plan = getattr(container, "__scoped_plan__")
    return new_scope(container, name, dict(values) if values else None, <Plan?>plan)
