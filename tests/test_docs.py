"""The architecture page (docs/architecture.md) and the API reference (docs/api.rst) cannot
rot silently: the page names every package and top-level module of dtb, every module,
name and file it names exists, each noun lives in the module its table gives, its layer
diagram is the import-linter contract, and the API reference lists every package that
lives outside dtb/ (the recursive scan from ``dtb`` cannot find those).  The independent
expectation is the source tree itself: dtb/ and the package_dir mappings of setup.cfg.
Building the HTML is CI's job (.ci/run), not the suite's."""

from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
API = ROOT / "docs" / "api.rst"


def package_dirs() -> dict[str, Path]:
    """setup.cfg's ``package_dir``: package name -> its folder in the source tree."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pairs = (line.split("=") for line in cfg["options"]["package_dir"].splitlines() if line)
    return {name.strip(): ROOT / folder.strip() for name, folder in pairs}


def packages_and_modules() -> list[str]:
    """Every package of dtb at any depth, dtb's top-level modules, and every package that
    package_dir maps into the dtb namespace."""
    dirs = package_dirs()
    names = {name for name in dirs if name != "dtb"}
    top = dirs["dtb"]
    names |= {f"dtb.{p.stem}" for p in top.glob("*.py") if not p.stem.startswith("_")}
    for init in top.rglob("__init__.py"):
        rel = init.parent.relative_to(top)
        if rel.parts:
            names.add(".".join(("dtb", *rel.parts)))
    return sorted(names)


def mentions(text: str, name: str) -> bool:
    """``name`` appears as a whole dotted name (``dtb.model`` is not ``dtb.models``)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text) is not None


def code_spans(text: str) -> list[str]:
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text)


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name denotes (ImportError/AttributeError if none)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_tree_is_found():
    """The enumeration itself sees the layers the import-linter contract names."""
    names = packages_and_modules()
    for expected in ("dtb.cli", "dtb.engine", "dtb.engine.gpu", "dtb.io", "dtb.model",
                     "dtb.errors", "dtb.kernels", "dtb.assimilation", "dtb.data"):
        assert expected in names


@pytest.mark.parametrize("name", packages_and_modules())
def test_architecture_names_every_package_and_module(name):
    assert mentions(ARCHITECTURE.read_text(encoding="utf-8"), name), (
        f"{ARCHITECTURE.relative_to(ROOT)}: {name} is not mentioned -- expected every "
        "package and top-level module of dtb to be placed in the architecture")


def test_every_module_and_name_it_mentions_exists():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    dotted = sorted({s for s in code_spans(text) if re.fullmatch(r"dtb(\.\w+)+", s)})
    assert len(dotted) > 30  # the table of nouns is there
    missing = []
    for name in dotted:
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"{ARCHITECTURE.relative_to(ROOT)}: no such module or name: {missing}"


def test_every_path_it_mentions_exists():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    paths = sorted({s for s in code_spans(text)
                    if "/" in s and not s.startswith("..") and " " not in s
                    and re.fullmatch(r"[\w./-]+", s) and (s.endswith("/") or "." in s)})
    assert len(paths) > 20
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"{ARCHITECTURE.relative_to(ROOT)}: no such file or folder: {missing}"


def noun_rows(text: str) -> list[tuple[list[str], list[str]]]:
    """The rows of the "Where each noun lives" table: (names in the first column, modules
    in the second)."""
    section = text.split("## Where each noun lives", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("noun", "---"):
            continue
        names = [s for s in code_spans(cells[0]) if s.isidentifier()]
        modules = [s for s in code_spans(cells[1]) if s.startswith("dtb")]
        rows.append((names, modules))
    return rows


def test_every_noun_lives_where_the_table_says():
    rows = noun_rows(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(rows) > 20 and all(modules for _, modules in rows)
    wrong = [(name, modules) for names, modules in rows for name in names
             if not any(hasattr(importlib.import_module(m), name) for m in modules)]
    assert not wrong, f"{ARCHITECTURE.relative_to(ROOT)}: not defined where it says: {wrong}"


def test_api_reference_lists_packages_outside_dtb():
    listed = re.findall(r"^\s{3}(dtb[\w.]*)\s*$", API.read_text(encoding="utf-8"), re.M)
    assert "dtb" in listed
    missing = [name for name in package_dirs() if name not in listed]
    assert not missing, f"{API.relative_to(ROOT)}: autosummary does not list {missing}"


def test_readme_links_the_architecture():
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_layers_are_those_import_linter_checks():
    """The page's layer diagram is setup.cfg's layers contract, top to bottom."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    contract = [{f"dtb.{m.strip()}" for m in line.split("|")}
                for line in cfg["importlinter:contract:layers"]["layers"].splitlines() if line]
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    drawn = [{m.strip() for m in re.split(r"\s{2,}", line.strip())[0].split("|")}
             for line in block.splitlines() if line]
    assert drawn == contract, (
        f"{ARCHITECTURE.relative_to(ROOT)}: the layers drawn {drawn} -- expected those of "
        f"setup.cfg's [importlinter:contract:layers], top to bottom: {contract}")
