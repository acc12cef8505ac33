"""Sphinx configuration: dtb's architecture page and its API reference from docstrings.

Build (CI runs the same, warnings as errors)::

    .venv/bin/sphinx-build -b html -W --keep-going -q docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
import types

from dtb.version import __version__

# Importing dtb sets OpenMP's waiting policy; importing the kernels may compile nothing,
# but keep numba to one thread on shared machines all the same.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

project = "dtb"
author = "dtb contributors"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build"]

# The API reference: one page per module, generated at build time under docs/api/
# (ignored by git) from _templates/autosummary/module.rst; members in source order, private
# names left out, and a module's own members only (names a package re-exports, such as
# dtb.Network, are documented where they are defined).
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
    "ignore-module-all": True,
}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
# Optional dependencies, imported lazily by the modules that use them: not needed to
# document them.
autodoc_mock_imports = ["cupy", "mpi4py", "pynwb", "nilearn", "libsonata"]
# ``python -m dtb.cli`` runs the command line when imported: the recursive scan must not
# import it (a module marked as a Sphinx mock is skipped).
_cli_main = types.ModuleType("dtb.cli.__main__")
_cli_main.__sphinx_mock__ = True  # type: ignore[attr-defined]
sys.modules.setdefault("dtb.cli.__main__", _cli_main)

napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = f"dtb {__version__}"
