"""Build and load the host build of the CUDA kernels (``hostemu.cpp``) as a shared library.

The library is compiled with the system's C++ compiler (``$CXX``, else g++, c++ or
clang++) or, with ``DTB_HOSTEMU_NVCC=1``, with nvcc's host pass, without fused
multiply-add (``-ffp-contract=off``), and cached in the temporary folder under a name made
of the hash of every source and the command, so it is built once per change.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dtb.engine.gpu.sources import kernel_dir, kernel_files

HERE = Path(__file__).resolve().parent


class HostBuildError(RuntimeError):
    """The host build of the kernels could not be made (no compiler, or it failed)."""


def host_compile_command(out: Path) -> list[str]:
    """The compiler command that builds the library at out."""
    src = HERE / "hostemu.cpp"
    if os.environ.get("DTB_HOSTEMU_NVCC") == "1":
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            raise HostBuildError("DTB_HOSTEMU_NVCC=1 but nvcc is not on the PATH")
        return [nvcc, "-O2", "-std=c++17", "-x", "c++", "-shared", "-Xcompiler",
                "-fPIC,-ffp-contract=off", "-I", str(kernel_dir()), str(src), "-o", str(out)]
    cxx = os.environ.get("CXX") or next(
        (c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if cxx is None:
        raise HostBuildError("no C++ compiler found (set CXX, or install g++)")
    return [cxx, "-O2", "-std=c++17", "-fPIC", "-shared", "-ffp-contract=off",
            "-fno-fast-math", "-I", str(kernel_dir()), str(src), "-o", str(out)]


def build_host_library() -> Path:
    """The path of the built library (building it when the cache has none)."""
    probe = host_compile_command(Path("OUT"))
    digest = hashlib.sha256(" ".join(probe).encode())
    for f in [HERE / "hostemu.cpp", *kernel_files()]:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    folder = Path(tempfile.gettempdir()) / f"dtb-hostemu-{digest.hexdigest()[:20]}"
    lib = folder / "libdtbhost.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"libdtbhost.{os.getpid()}.so"
    cmd = host_compile_command(tmp)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise HostBuildError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    os.replace(tmp, lib)  # atomic: concurrent builders leave one complete file
    return lib


_P, _I32, _I64, _U32, _F64 = (ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64,
                               ctypes.c_uint32, ctypes.c_double)

#: Argument types of the single-function entry points (the launches: kernels.SIGNATURES).
HELPERS = {
    "host_philox_many": [_I64, _P, _P, _P],
    "host_block_many": [_I64, _U32, _U32, _I64, _U32, _P, _P, _U32, _P],
    "host_draws_many": [_I64, _P, _P, _P],
    "host_ou_normals_many": [_I64, _P, _P],
    "host_cdf_count_many": [_I64, _P, _P, _P],
    "host_poisson_many": [_I64, _F64, _U32, _I64, _P, _P, _P],
    "host_step_many": [_I32, _I64, _P, _P, _P, _P, _P, _P, _P, _F64, _P],
}

_LIB: ctypes.CDLL | None = None


def load_host_library() -> ctypes.CDLL:
    """The host build, loaded once per process, with the helpers' argument types set."""
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(str(build_host_library()))
        for name, types in HELPERS.items():
            fn = getattr(lib, name)
            fn.argtypes = types
            fn.restype = None
        _LIB = lib
    return _LIB
