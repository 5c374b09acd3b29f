"""Sphinx configuration of the defuse_widgets documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (the ``docs``
extra installs what it needs). Pages are Markdown (MyST); the notebooks in
``notebooks/`` are copied into ``docs/notebooks/`` at build time and rendered
as they are stored, without being executed. The API reference has one page per
public module, written into ``docs/api/generated/`` at build time (autodoc
documents each module's members; autosummary tables list what a package
re-exports). Both generated folders are ignored by git.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import posixpath
import re
import shutil
import sys
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))

import defuse_widgets  # noqa: E402

project = "defuse_widgets"
author = "the defuse_widgets authors"
copyright = "the defuse_widgets authors, MIT licence"
release = version = defuse_widgets.__version__

extensions = [
    "myst_nb",                      # Markdown pages (MyST) and the notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "screenshots/*.py", "Thumbs.db", ".DS_Store"]

# --- MyST and myst-nb -------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3            # [text](page.md#a-heading) links work, as on GitHub
nb_execution_mode = "off"           # notebooks render as stored: no kernel in the docs build
nb_merge_streams = True

# --- autodoc, autosummary and numpydoc --------------------------------------------------
autosummary_generate = False        # the module pages are written below, not by autosummary
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "separated"   # the class's docstring, then __init__'s signature
numpydoc_show_class_members = False     # methods are documented by autodoc, not by tables
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- HTML -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"defuse_widgets {release}"
html_static_path: list = []
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 7,
    "navbar_persistent": ["search-button"],
    "use_edit_page_button": False,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
# light or dark as the reader's system is (no console error)
html_context = {"default_mode": "auto"}
#: Pages without sub-pages get no (empty) section navigation on the left.
html_sidebars = {page: [] for page in (
    "index", "getting-started", "own-model", "session-folder", "widgets", "bayes-trex",
    "paper-differences", "data", "limits", "changelog")}


# --- the notebooks ----------------------------------------------------------------------
def _copy_notebooks() -> None:
    """Copy ``notebooks/*.ipynb`` into ``docs/notebooks/`` (ignored by git), unchanged."""
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    sources = sorted((REPO / "notebooks").glob("*.ipynb"))
    for stale in set(target.glob("*.ipynb")) - {target / s.name for s in sources}:
        stale.unlink()
    for source in sources:
        copy = target / source.name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copyfile(source, copy)


_copy_notebooks()


# --- one page per public module ---------------------------------------------------------
#: The package the API reference documents, and where its module pages go.
API_ROOT = "defuse_widgets"
API_DIR = DOCS / "api" / "generated"


def _public_children(package: str) -> list[str]:
    """The public modules and subpackages directly under ``package``."""
    module = importlib.import_module(package)
    return [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)
            if not info.name.startswith("_")]


def _is_package(name: str) -> bool:
    return hasattr(importlib.import_module(name), "__path__")


def _title(name: str) -> str:
    text = name.replace("_", r"\_")
    return f"{text}\n{'=' * len(text)}\n"


def _module_page(name: str) -> str:
    """The reST of one module's page. Modules are imported by name, never reached as an
    attribute of their package (``workflow.report`` is also a function there).
    """
    if _is_package(name):
        return (f"{_title(name)}\n.. automodule:: {name}\n\n.. defuse-reexports:: {name}\n\n"
                f".. rubric:: Modules\n\n.. defuse-modules:: {name}\n")
    return f"{_title(name)}\n.. automodule:: {name}\n   :members:\n   :show-inheritance:\n"


def _write_api_pages() -> None:
    """Write ``api/generated/<module>.rst`` for every public module (only when changed,
    so that an unchanged page is not read again), and drop pages of modules now gone.
    """
    API_DIR.mkdir(parents=True, exist_ok=True)
    pages, todo = {}, _public_children(API_ROOT)
    while todo:
        name = todo.pop()
        pages[f"{name}.rst"] = _module_page(name)
        if _is_package(name):
            todo += _public_children(name)
    for stale in set(API_DIR.iterdir()) - {API_DIR / page for page in pages}:
        stale.unlink()
    for page, text in pages.items():
        path = API_DIR / page
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


_write_api_pages()


def _summary(module) -> str:
    """The first sentence of a module's docstring, on one line."""
    paragraph = (inspect.getdoc(module) or "").split("\n\n")[0]
    paragraph = " ".join(paragraph.split())
    sentence = re.match(r"(.+?\.)(\s|$)", paragraph)
    return sentence.group(1) if sentence else paragraph


class Modules(SphinxDirective):
    """``.. defuse-modules:: package``: a table of the public modules under ``package``
    (first those named in the content, in that order, then the rest), each linked to its
    page, and a hidden toctree of those pages.
    """

    required_arguments = 1
    has_content = True

    def run(self) -> list:
        package = self.arguments[0]
        children = _public_children(package)
        named = [f"{package}.{line.strip()}" for line in self.content if line.strip()]
        names = [n for n in named if n in children] + [n for n in children if n not in named]
        here = posixpath.dirname(self.env.docname)
        lines = [".. list-table::", "   :widths: 30 70", ""]
        for name in names:
            lines += [f"   * - :mod:`~{name}`", f"     - {_summary(importlib.import_module(name))}"]
        lines += ["", ".. toctree::", "   :hidden:", ""]
        lines += [f"   {posixpath.relpath(f'api/generated/{name}', here)}" for name in names]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<modules of {package}>"),
                                self.content_offset, container)
        return container.children


# --- what a package re-exports ----------------------------------------------------------
def _defined_in(obj, package: str) -> str | None:
    """The module under ``package`` that defines ``obj`` (found by identity for plain data)."""
    module = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and module:
        return module
    for name, mod in sorted(sys.modules.items()):
        if name.startswith(package + ".") and not hasattr(mod, "__path__"):
            if any(value is obj for value in vars(mod).values()):
                return name
    return None


class Reexports(SphinxDirective):
    """``.. defuse-reexports:: package``: a summary table of what ``package.__all__`` names,
    each linked to where it is documented (the module that defines it).
    """

    required_arguments = 1

    def run(self) -> list:
        package = self.arguments[0]
        module = importlib.import_module(package)
        objects, data = [], []
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            home = _defined_in(obj, package)
            if home and (inspect.isclass(obj) or inspect.isfunction(obj)):
                objects.append(f"~{home}.{obj.__qualname__}")
            elif not name.startswith("__"):
                data.append(f"``{name}`` (from :mod:`{home}`)" if home else f"``{name}``")
        # Absolute names: autosummary refuses items under the page's current module.
        lines = [".. py:currentmodule:: None", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {target}" for target in objects] + [""]
        if data:
            lines += ["Constants: " + ", ".join(data) + ".", ""]
        lines += [f".. py:currentmodule:: {self.env.ref_context.get('py:module') or 'None'}", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<reexports of {package}>"),
                                self.content_offset, container)
        return container.children


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out what scikit-learn adds to its estimators (``set_fit_request`` and the
    like, made by its metadata routing): their docstrings point into sklearn's own docs.
    """
    if getattr(obj, "__module__", "") and obj.__module__.startswith("sklearn."):
        return True
    return None


def setup(app) -> dict:
    app.add_directive("defuse-reexports", Reexports)
    app.add_directive("defuse-modules", Modules)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    return {"parallel_read_safe": True}
