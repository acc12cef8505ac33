"""The architecture, checked on the source (issue 17): no import cycles, imports at module
level, the library never importing the command line, and the code's shape.

import-linter (CI, setup.cfg) checks the layers of the modules under dtb/; it cannot see
dtb.assimilation, dtb.kernels and dtb.data, which live beside dtb/ (package_dir).  This
test reads every module of the installed package from the repository with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {"dtb": ROOT / "dtb", "dtb.assimilation": ROOT / "assimilation",
         "dtb.kernels": ROOT / "kernels", "dtb.data": ROOT / "data"}
# optional or heavy dependencies, imported where they are needed (mpi4py initialises MPI)
LAZY = {"mpi4py", "matplotlib", "cupy", "cupyx", "nibabel", "pynwb", "hdmf", "nilearn"}
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def modules() -> dict[str, Path]:
    out = {}
    for pkg, d in TREES.items():
        for f in sorted(d.rglob("*.py")):
            if "__pycache__" in f.parts:
                continue
            rel = f.relative_to(d).with_suffix("").parts
            name = ".".join((pkg, *rel))
            out[name.removesuffix(".__init__")] = f
    return out


MODULES = modules()


def imports(tree: ast.Module, name: str, is_pkg: bool) -> list[tuple[str, ast.stmt, bool]]:
    """(module imported, statement, at module level) for every dtb import of a module."""
    out = []
    # an import inside `try:` probes an optional feature (an unknown numba, a missing
    # library) and may fail: it counts as at module level
    top = {id(n) for n in tree.body}
    for n in ast.walk(tree):
        if isinstance(n, ast.Try):
            top.update(id(x) for x in n.body)
    skip = set()
    for n in tree.body:  # `if TYPE_CHECKING:` blocks are not run
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            skip.update(id(x) for x in ast.walk(n))
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split(".")[: len(name.split(".")) - n.level + is_pkg]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            # `from package import submodule` depends on the submodule (the package's
            # own __init__ runs first in any case: not an edge of the graph)
            subs = [f"{mod}.{a.name}" for a in n.names if f"{mod}.{a.name}" in MODULES]
            targets = subs or [mod]
        elif isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in MODULES or t.split(".")[0] in LAZY or t.split(".")[0] != "dtb":
                out.append((t, n, id(n) in top))
    return out


def graph() -> dict[str, set[str]]:
    g = {}
    for name, f in MODULES.items():
        tree = ast.parse(f.read_text())
        g[name] = {t for t, _, _ in imports(tree, name, f.name == "__init__.py")
                   if t in MODULES and t != name}
    return g


def test_no_import_cycles():
    """Tarjan's strongly connected components of the import graph are single modules
    (a package importing its own submodules is a tree edge, not a cycle: the submodule
    must not import the package back)."""
    g = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert cycles == []


def test_imports_at_module_level():
    """No function-level imports, except of optional or heavy dependencies (LAZY)."""
    late = []
    for name, f in MODULES.items():
        tree = ast.parse(f.read_text())
        for t, n, at_top in imports(tree, name, f.name == "__init__.py"):
            if not at_top and t.split(".")[0] not in LAZY and not isinstance(n, ast.If):
                late.append(f"{f.relative_to(ROOT)}:{n.lineno}: {t}")
    assert sorted(set(late)) == []


def test_the_library_never_imports_the_command_line():
    g = graph()
    bad = sorted(f"{m} -> {t}" for m, ts in g.items() if not m.startswith("dtb.cli")
                 for t in ts if t == "dtb.cli" or t.startswith("dtb.cli."))
    assert bad == []


def _long_functions() -> list[str]:
    out = []
    for name, f in MODULES.items():
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if n.end_lineno - n.lineno + 1 >= MAX_FUNCTION_LINES:
                    out.append(f"{name}.{n.name}")
    return sorted(out)


def _long_modules() -> list[str]:
    return sorted(name for name, f in MODULES.items()
                  if len(f.read_text().splitlines()) >= MAX_MODULE_LINES)


@pytest.mark.parametrize("found, limit", [(_long_functions, MAX_FUNCTION_LINES),
                                          (_long_modules, MAX_MODULE_LINES)])
def test_code_shape(found, limit):
    """Functions under 80 lines, modules under 500 (split along a real seam when one
    grows past what a reader can hold)."""
    assert found() == [], f"at or over {limit} lines"


def test_the_checks_see_the_whole_package():
    """The module list covers the four trees (a wrong path would make every check pass)."""
    assert {"dtb.engine.simulation", "dtb.assimilation.enkf", "dtb.kernels.dynamics",
            "dtb.data", "dtb.cli.main"} <= set(MODULES)
    assert len(MODULES) > 80
