"""Compile every numba kernel once and leave them in numba's cache: ``python -m
dtb.precompile``.

The kernels are compiled at first use (about 30-60 s on one core) and cached on disk
(``cache=True``): in ``NUMBA_CACHE_DIR`` when it is set, else in ``__pycache__`` beside the
installed sources when that is writable, else in ``~/.cache/numba``.  A cache is used only
where it is writable and only by a machine of the same CPU target (numba keys its entries by
CPU name and features), which is why the container images set ``NUMBA_CPU_NAME=generic``
(portable code) and run this at build time (docker/README.md).

What runs: a microcircuit (``iaf_psc_exp``, Poisson and DC inputs) and the default subject's
brain (``lif_cond``, OU input, long-range rules) for 20 ms each, recording spikes, rates,
unit rates, BOLD and membrane/synaptic samples, in a temporary directory that is removed.
"""

from __future__ import annotations

import os
import tempfile
import time

__all__ = ["precompile"]


def precompile() -> float:
    """Run the two tiny simulations (see the module docstring); returns the seconds taken."""
    from dtb.cli import main

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dtb-precompile-") as d:
        runs = [
            ["simulate", "--model", "microcircuit", "--scale", "0.01", "--t", "20",
             "--out", os.path.join(d, "mc")],
            ["simulate", "--brain", os.path.join(d, "brain.h5"), "--t", "20", "--record",
             "units:10", "--record", "bold:10", "--record",
             "samples:n=1,every=10,variables=V+syn", "--out", os.path.join(d, "brain")],
        ]
        if main(["build", "--demo", "--neurons", "3000", "-o", os.path.join(d, "brain.h5")]):
            raise SystemExit("dtb precompile: building the default subject failed")
        for args in runs:
            if main([*args, "--threads", "1", "--quiet"]):
                raise SystemExit(f"dtb precompile: dtb {' '.join(args)} failed")
    return time.perf_counter() - t0


if __name__ == "__main__":
    secs = precompile()
    where = os.environ.get("NUMBA_CACHE_DIR") or "the package's __pycache__ (or ~/.cache/numba)"
    print(f"dtb precompile: kernels compiled and cached in {secs:.1f} s ({where})")
