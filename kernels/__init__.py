"""Compute kernels (installed as ``dtb.kernels``): numba on the CPU, CUDA sources for CuPy.

numba's on-disk cache checks only the source file of each cached function, but the fused
time loop (loop.py) inlines kernels from other files; after any of them changes, its
stale cache would run old code against new data layouts.  So the whole cache of this
package is dropped whenever any kernel source changes, wherever numba keeps it: beside the
sources (``__pycache__``), in ``NUMBA_CACHE_DIR`` when that is set, or in numba's user-wide
cache when the package is read-only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _invalidate_stale_cache() -> None:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(here.glob("*.py")):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    stamp = digest.hexdigest()
    cache = _cache_dir(here)
    mark = cache / "dtb-kernels.sha256"
    try:
        if mark.exists() and mark.read_text() == stamp:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        mark.write_text(stamp)
    except OSError:  # a read-only install: numba then does not cache either
        pass


def _probe() -> None:
    """A function of this package's directory, to ask numba where it caches kernels."""


def _cache_dir(here: Path) -> Path:
    """The directory numba caches this package's kernels in (the same locator for every
    file of a directory: NUMBA_CACHE_DIR, else __pycache__ if writable, else user-wide)."""
    try:
        from numba.core.caching import FunctionCache

        return Path(FunctionCache(_probe)._cache_path)
    except Exception:  # noqa: BLE001 - an unknown numba: the in-tree default
        return here / "__pycache__"


_invalidate_stale_cache()
