"""Build the compiled core of dependency-injector-scoped.

Metadata lives in ``pyproject.toml``; this file only declares the Cython
extensions.  Environment switches:

``DIS_LIMITED_API``
    ``0`` (default) builds version-specific extensions with
    ``CYTHON_USE_TYPE_SPECS=1``.  ``1`` builds limited-API ``abi3`` extensions
    for CPython 3.10+, like dependency-injector's own wheels; they work, but
    the limited API has no ContextVar C API and no vectorcall before 3.12, and
    a request cycle costs about 1.1x (sync) to 1.7x (async) as much (see
    benchmarks/ and the README).  Both
    make our classes heap types, whose reference count stays stable under
    upstream's limited-API ``tp_dealloc`` (a default static-type build
    crashes).
``DIS_LINETRACE``
    ``1`` compiles with line tracing for coverage runs (slow).
"""

import os
import sys
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup

if sys.implementation.name != "cpython" or sysconfig.get_config_var("Py_GIL_DISABLED"):
    # The classes subclass dependency-injector's C types through their structs
    # and vtables, and creating a scoped instance exactly once relies on the GIL.
    sys.exit(
        "dependency-injector-scoped supports CPython with the GIL only; "
        f"this is {sys.implementation.name} {sys.version.split()[0]}."
    )

LIMITED_API = os.environ.get("DIS_LIMITED_API", "0") == "1" and sys.implementation.name == "cpython"
LINETRACE = os.environ.get("DIS_LINETRACE", "0") == "1"

define_macros = []
if LIMITED_API:
    define_macros.append(("Py_LIMITED_API", "0x030A0000"))
else:
    define_macros.append(("CYTHON_USE_TYPE_SPECS", "1"))
if LINETRACE:
    define_macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]

compiler_directives = {
    "language_level": "3",
    "embedsignature": True,
    "embedsignature.format": "clinic",
    "binding": False,
    "linetrace": LINETRACE,
}

extensions = [
    Extension(
        f"dependency_injector_scoped.{name}",
        [f"src/dependency_injector_scoped/{name}.pyx"],
        define_macros=define_macros,
        py_limited_api=LIMITED_API,
    )
    for name in ("_scope", "providers")
]

options = {"bdist_wheel": {"py_limited_api": "cp310"}} if LIMITED_API else {}

setup(
    ext_modules=cythonize(extensions, compiler_directives=compiler_directives),
    options=options,
)
