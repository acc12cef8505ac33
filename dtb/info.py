"""What this installation of dtb can run on: versions, MPI, GPUs and available backends.

``info()`` returns a plain dict (``dtb info --json``); ``render(info())`` the text
``dtb info`` prints.  Optional parts (mpi4py, cupy) are imported lazily and reported as
missing when they are not installed or fail to load; nothing here initializes MPI or
changes the state of the calling process.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import h5py
import numba
import numpy as np

from dtb.engine.compiling import cache_dir
from dtb.engine.gpu.device import gpu_status
from dtb.engine.threads import waiting_policy
from dtb.version import __version__

_MPI_PROBE = (
    "import mpi4py\n"
    "mpi4py.rc.initialize = False\n"
    "mpi4py.rc.finalize = False\n"
    "from mpi4py import MPI\n"
    "print(MPI.Get_library_version())\n"
)


def _first_line(text: str) -> str:
    line = next((s for s in text.splitlines() if s.strip()), "")
    return " ".join(line.split())


def _mpi() -> dict[str, Any]:
    """mpi4py's version and the first line of the MPI library's version string.

    The library is asked in a child process (with MPI initialization disabled) unless this
    process has already imported ``mpi4py.MPI``, so asking never calls MPI_Init here: on some
    clusters MPI_Init outside a job step aborts the process.
    """
    try:
        import mpi4py
    except ImportError:
        return {"mpi4py": None, "mpi_library": None}
    out: dict[str, Any] = {"mpi4py": mpi4py.__version__, "mpi_library": None}
    try:
        if "mpi4py.MPI" in sys.modules:
            out["mpi_library"] = _first_line(sys.modules["mpi4py.MPI"].Get_library_version())
        else:
            r = subprocess.run([sys.executable, "-c", _MPI_PROBE], capture_output=True,
                               text=True, timeout=60)
            if r.returncode == 0:
                out["mpi_library"] = _first_line(r.stdout)
            else:
                out["mpi_error"] = _first_line(r.stderr.splitlines()[-1] if r.stderr else
                                               f"exit code {r.returncode}")
    except Exception as e:  # a broken MPI must not break `dtb info`
        out["mpi_error"] = f"{type(e).__name__}: {e}"
    return out


def info() -> dict[str, Any]:
    """The installation's versions and capabilities.

    Keys: ``dtb``, ``python``, ``python_executable``, ``platform``, ``numpy``, ``numba``,
    ``numba_threads`` (CPU threads the engine uses by default), ``openmp_waiting`` (the
    OpenMP waiting settings in force, dtb.engine.threads), ``kernel_cache`` (where numba caches
    the kernels, dtb.engine.compiling), ``h5py``, ``hdf5``,
    ``mpi4py`` and ``mpi_library`` (None when not installed), ``cupy`` (None when not
    installed), ``cuda_available``, ``gpus`` (device names), and ``backends`` (``"cpu"``
    always, ``"gpu"`` when CUDA is usable through cupy).
    """


    d: dict[str, Any] = {
        "dtb": __version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "openmp_waiting": waiting_policy(),
        "kernel_cache": cache_dir(),
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }
    d.update(_mpi())
    d.update(gpu_status())
    d["backends"] = ["cpu"] + (["gpu"] if d["cuda_available"] else [])
    return d


def render(d: dict[str, Any]) -> str:
    """``info()`` as the aligned text ``dtb info`` prints."""
    if d["mpi4py"] is None:
        mpi = "not installed"
    elif d.get("mpi_library"):
        mpi = f"{d['mpi4py']} ({d['mpi_library']})"
    else:
        mpi = f"{d['mpi4py']} (MPI library unavailable: {d.get('mpi_error', 'unknown')})"
    if d["cupy"] is None:
        cupy = "not installed" + (f" ({d['cupy_error']})" if d.get("cupy_error") else "")
    else:
        cupy = d["cupy"]
    if d["cuda_available"]:
        n = len(d["gpus"])
        cuda = f"available, {n} GPU{'s' if n != 1 else ''}: {', '.join(d['gpus'])}"
    else:
        cuda = "not available" + (f" ({d['cuda_error']})" if d.get("cuda_error") else "")
    rows = [
        ("dtb", d["dtb"]),
        ("python", f"{d['python']} ({d['python_executable']})"),
        ("platform", d["platform"]),
        ("numpy", d["numpy"]),
        ("numba", f"{d['numba']} ({d['numba_threads']} threads; OpenMP waiting "
                  f"{' '.join(f'{k}={v}' for k, v in d['openmp_waiting'].items()) or 'default'}"
                  f"; kernel cache {d['kernel_cache']})"),
        ("h5py", f"{d['h5py']} (HDF5 {d['hdf5']})"),
        ("mpi4py", mpi),
        ("cupy", cupy),
        ("cuda", cuda),
        ("backends", ", ".join(d["backends"])),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
