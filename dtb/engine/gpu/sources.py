"""The CUDA sources of the kernels (dtb.kernels: ``*.cu``, ``*.cuh``), found in the installed
package and inlined into one translation unit for NVRTC."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)


def kernel_dir() -> Path:
    """The folder of the kernel sources (the installed ``dtb.kernels`` package, found
    without importing it)."""
    spec = importlib.util.find_spec("dtb.kernels")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("dtb.kernels -- expected the installed package's kernels")
    return Path(spec.origin).resolve().parent


def kernel_files() -> list[Path]:
    """Every CUDA source and header of dtb.kernels, sorted by name."""
    d = kernel_dir()
    return sorted([*d.glob("*.cu"), *d.glob("*.cuh")])


def inline_includes(path: Path, seen: set[str] | None = None) -> str:
    """The source of path with its local ``#include "x"`` lines replaced by the files'
    text (each file once), so NVRTC needs no include path."""
    seen = set() if seen is None else seen
    seen.add(path.name)

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in seen:
            return f"// (already included: {name})"
        return inline_includes(path.parent / name, seen)

    return _INCLUDE.sub(sub, path.read_text())


def cuda_source() -> str:
    """The one translation unit that the GPU backend compiles: dynamics.cu and
    delivery.cu with their headers inlined."""
    d = kernel_dir()
    seen: set[str] = set()
    return inline_includes(d / "dynamics.cu", seen) + "\n" + inline_includes(
        d / "delivery.cu", seen)
