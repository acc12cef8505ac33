"""The CUDA kernel set: sources, launch signatures, and two ways to run them.

``CudaKernels`` compiles ``kernels/dynamics.cu`` and ``kernels/delivery.cu`` with NVRTC
through ``cupy.RawModule`` at first use (CuPy caches the binary on disk, keyed by source
and options) and launches them on a stream.  ``HostKernels`` runs the very same source
compiled for the CPU (``dtb/engine/gpu/hostemu.cpp``, via ctypes), one emulated thread at a
time: ``GpuBackend(engine, emulate=True)`` then runs every line of the backend and every
kernel body on a machine without a GPU, which is how the tests compare it with the numba
engine.

The argument lists below mirror the ``DTB_*_PARAMS`` macros of the .cu files, in order;
pointer arguments are ``p``, scalars are ``i32``, ``i64``, ``u32``, ``f64``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from dtb.engine.gpu.hostemu import load_host_library
from dtb.engine.gpu.sources import cuda_source

#: NVRTC options: no fused multiply-add (the CPU kernels never fuse), IEEE division and
#: square root (NVRTC's defaults, spelled out).  No -std: CuPy may add its own.
NVRTC_OPTIONS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true")

_SYN = ["pop_proj_ptr:p", "pop_proj:p", "max_q:i32", "proj_row0:p", "proj_port:p",
        "proj_shift:p", "indptr:p", "tgt:p", "wq:p", "dly:p", "dly8:i32", "ring:p", "D:i32",
        "n_ports:i32", "n:i64"]

#: Launch signatures (name:type), as the DTB_*_PARAMS macros.
SIGNATURES: dict[str, list[str]] = {
    "dtb_dynamics": [
        "ctl:p", "m:i32", "dt:f64", "seed:u32", "n:i64", "V:p", "syn:p", "refr:p", "P:p",
        "pid:p", "n_pop:i32", "pop_lo:p", "pop_model:p", "pop_gid0:p", "pop_in_ptr:p",
        "pop_in:p", "ring:p", "D:i32", "n_ports:i32", "masks:p", "in_kind:p", "in_lo:p",
        "in_hi:p", "in_id:p", "in_port:p", "in_a:p", "in_b:p", "in_c:p", "in_wfix:p",
        "in_off:p", "in_cdf:p", "ou:p", "ou_n:i64", "rec_step:p", "rec_idx:p", "rec_cap:i64",
        "pop_count:p"],
    "dtb_deliver_local": ["ctl:p", "m:i32", "rec_step:p", "rec_idx:p", "rec_cap:i64",
                          "n_pop:i32", "pop_lo:p", "pop_first:p", *_SYN],
    "dtb_deliver_remote": ["n_spk:i64", "sp_step:p", "sp_pop:p", "sp_src:p", *_SYN],
}

_NUMPY_SCALAR = {"i32": np.int32, "i64": np.int64, "u32": np.uint32, "f64": np.float64}
_CTYPES = {"p": ctypes.c_void_p, "i32": ctypes.c_int32, "i64": ctypes.c_int64,
           "u32": ctypes.c_uint32, "f64": ctypes.c_double}


def check_args(name: str, args: tuple) -> None:
    """Raise TypeError unless args match the signature of kernel name (count and scalar
    types): a wrong scalar type would be passed with the wrong width to the kernel."""
    sig = SIGNATURES[name]
    if len(args) != len(sig):
        raise TypeError(f"{name}: {len(args)} arguments -- expected {len(sig)}")
    for a, spec in zip(args, sig, strict=True):
        arg, kind = spec.split(":")
        if kind == "p":
            if not hasattr(a, "shape"):
                raise TypeError(f"{name}: argument {arg} is {type(a).__name__} -- expected an "
                                "array")
        elif type(a) is not _NUMPY_SCALAR[kind]:
            raise TypeError(f"{name}: argument {arg} is {type(a).__name__} -- expected "
                            f"numpy.{_NUMPY_SCALAR[kind].__name__}")


class CudaKernels:
    """The kernels compiled by NVRTC for the current device and launched on ``stream``."""

    def __init__(self, stream: Any = None):
        import cupy

        self._cupy = cupy
        self.module = cupy.RawModule(code=cuda_source(), options=NVRTC_OPTIONS)
        self._fn = {name: self.module.get_function(name) for name in SIGNATURES}
        self.stream = stream

    def launch(self, name: str, grid: int, block: int, args: tuple) -> None:
        """Launch kernel name on grid x block threads with args (see SIGNATURES)."""
        if grid <= 0:
            return
        self._fn[name]((grid,), (block,), args)


class HostKernels:
    """The kernels compiled for the CPU (dtb/engine/gpu/hostemu.cpp) and run one thread at a time;
    the delivery launches take the number of warps from grid * block / 32."""

    def __init__(self):
        self.lib = load_host_library()
        self._fn = {}
        for name, sig in SIGNATURES.items():
            fn = getattr(self.lib, "host" + name[3:])
            types = [_CTYPES[s.split(":")[1]] for s in sig]
            if name != "dtb_dynamics":
                types.append(ctypes.c_int64)
            fn.argtypes = types
            fn.restype = None
            self._fn[name] = fn

    def launch(self, name: str, grid: int, block: int, args: tuple) -> None:
        """Run kernel name's body for every thread of grid x block, in order."""
        check_args(name, args)
        conv = [a.ctypes.data if hasattr(a, "ctypes") else a.item() for a in args]
        if name != "dtb_dynamics":
            conv.append(grid * block // 32)
        self._fn[name](*conv)
