"""Sphinx configuration of the dependency-injector-scoped documentation."""

from __future__ import annotations

import dependency_injector_scoped

project = "dependency-injector-scoped"
author = "dependency-injector-scoped contributors"
copyright = "dependency-injector-scoped contributors"
release = dependency_injector_scoped.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The compiled classes have no introspectable signatures: the reference gives
# them explicitly (from the .pyi stubs), and autodoc only contributes docstrings.
# Members are listed explicitly in api.md: inherited framework attributes
# (celery.Task's) carry roles of their own projects' docs.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

nitpicky = False

html_theme = "furo"
html_title = f"dependency-injector-scoped {release}"


def _strip_embedded_signature(app, what, name, obj, options, lines):
    """Drop the ``Name(args)`` line Cython embeds at the top of a compiled docstring.

    The reference gives the stubs' signatures explicitly; the embedded line would
    otherwise show up as (wrong) text in the description.
    """
    short = name.rsplit(".", 1)[-1]
    if lines and lines[0].startswith((f"{short}(", f"{getattr(obj, '__name__', short)}(")):
        del lines[0]
        while lines and not lines[0].strip():
            del lines[0]
    elif lines and "." in lines[0].split("(", 1)[0] and lines[0].rstrip().endswith(")"):
        # ``Scope.init(self)``: a method's embedded signature.
        if lines[0].split("(", 1)[0].rsplit(".", 1)[-1] == short:
            del lines[0]
            while lines and not lines[0].strip():
                del lines[0]


def setup(app):
    """Register the docstring hook."""
    app.connect("autodoc-process-docstring", _strip_embedded_signature)
