"""GPU discovery for the GPU backend: which device a rank uses, whether the MPI library can
send from device memory, and whether a partition fits the device's memory.

One GPU per rank: a rank binds to (node-local rank) modulo (visible devices), the node-local
rank coming from SLURM (``SLURM_LOCALID``), the launcher (Open MPI's
``OMPI_COMM_WORLD_LOCAL_RANK``, MPICH/Hydra's ``MPI_LOCALRANKID``, PMI's
``PMI_LOCAL_RANK``) or, failing those, a shared-memory split of the communicator.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dtb.errors import DtbError
from dtb.kernels.rows import L_NREF, L_VRESET, L_VTH, R_NREF, R_THETA, R_VRESET_REL

_LOCAL_RANK_VARS = ("SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                    "PMI_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")

GIB = 2.0**30


class DeviceMemoryError(DtbError, MemoryError):
    """A partition does not fit the memory of its GPU (raised before anything is copied)."""


def local_rank(comm: Any = None) -> int:
    """This process's rank among the ranks on its node.

    SLURM_LOCALID (or the launcher's variable) when set; else, with a communicator, the
    rank in ``comm.Split_type(COMM_TYPE_SHARED)`` (a collective: call it on every rank);
    else 0.
    """
    for var in _LOCAL_RANK_VARS:
        v = os.environ.get(var)
        if v is not None and v.strip().isdigit():
            return int(v)
    if comm is not None and comm.Get_size() > 1:
        from mpi4py import MPI

        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return node.Get_rank()
        finally:
            node.Free()
    return 0


def device_for_rank(local: int, n_devices: int) -> int:
    """The device a rank with node-local rank ``local`` uses: local mod n_devices."""
    if n_devices <= 0:
        raise DeviceMemoryError("no CUDA device is visible (CUDA_VISIBLE_DEVICES, driver)")
    return local % n_devices


class GpuUnavailable(DtbError, RuntimeError):
    """The GPU backend was asked for where CuPy or a CUDA device is missing."""


def device_name(props: dict[str, Any]) -> str:
    """The device name from cupy.cuda.runtime.getDeviceProperties (bytes or str)."""
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def gpu_unavailable() -> str | None:
    """Why the GPU backend cannot run in this process (None: it can): CuPy missing or
    failing to load, or no CUDA device visible (dtb.info's probe, which ``dtb info``
    reports).  Cheap enough to check before building."""

    g = gpu_status()
    if g["cupy"] is None:
        return (f"CuPy is not importable ({g.get('cupy_error', 'not installed')}); install "
                "it with pip install 'dtb[gpu]' (CUDA 13) or 'dtb[gpu-cuda12]'")
    if not g["gpus"]:
        return "no CUDA device " + (f"({g['cuda_error']})" if g.get("cuda_error") else
                                    "is visible (CUDA_VISIBLE_DEVICES, driver)")
    return None


def select_device(comm: Any = None) -> int:
    """Bind this process to its GPU (see device_for_rank) and return the device number;
    GpuUnavailable when there is none to bind to."""
    why = gpu_unavailable()
    if why is not None:
        raise GpuUnavailable(f"backend gpu: {why} -- expected a CUDA GPU (or use the cpu "
                             "backend)")
    import cupy

    dev = device_for_rank(local_rank(comm), cupy.cuda.runtime.getDeviceCount())
    cupy.cuda.Device(dev).use()
    return dev


@dataclass(frozen=True)
class CudaAwareMPI:
    """Whether the MPI library accepts device pointers, and how that was found out."""

    supported: bool
    how: str


def cuda_aware_mpi(env: dict[str, str] | None = None) -> CudaAwareMPI:
    """Detect a CUDA-aware MPI.

    ``DTB_CUDA_AWARE_MPI=0|1`` overrides everything.  Otherwise: mpi4py's
    ``MPI.Query_cuda_support()`` (MPIX_Query_cuda_support, Open MPI and MPICH >= 4.1)
    where it exists; for MPICH, ``MPIR_CVAR_ENABLE_GPU=1`` (GPU support is then on, and
    an MPICH without it refuses to start); for Open MPI, ``ompi_info``'s
    ``mpi_built_with_cuda_support``.  Anything else: not CUDA-aware (spikes then travel
    through the host, which is always correct).
    """
    env = dict(os.environ) if env is None else env
    forced = env.get("DTB_CUDA_AWARE_MPI")
    if forced in ("0", "1"):
        return CudaAwareMPI(forced == "1", "DTB_CUDA_AWARE_MPI")
    try:
        from mpi4py import MPI
    except ImportError:
        return CudaAwareMPI(False, "mpi4py not installed")
    query = getattr(MPI, "Query_cuda_support", None)
    if query is not None:
        try:
            return CudaAwareMPI(bool(query()), "MPI.Query_cuda_support()")
        except Exception:  # noqa: BLE001 - an MPI without the MPIX extension raises
            pass
    library = MPI.Get_library_version()
    if "MPICH" in library:
        on = env.get("MPIR_CVAR_ENABLE_GPU", "") == "1"
        return CudaAwareMPI(on, "MPICH: MPIR_CVAR_ENABLE_GPU" + ("=1" if on else " not 1"))
    if "Open MPI" in library:
        return CudaAwareMPI(_ompi_info_cuda(), "ompi_info mpi_built_with_cuda_support")
    return CudaAwareMPI(False, f"unknown MPI library: {library.splitlines()[0][:60]}")


def _ompi_info_cuda() -> bool:
    exe = shutil.which("ompi_info")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "--parsable", "--all"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return parse_ompi_info(out)


def parse_ompi_info(text: str) -> bool:
    """True when ``ompi_info --parsable --all`` says the library was built with CUDA."""
    for line in text.splitlines():
        if line.startswith("mca:mpi:base:param:mpi_built_with_cuda_support:value:"):
            return line.rsplit(":", 1)[1].strip() == "true"
    return False


# --- memory --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceMemory:
    """Device bytes of one partition, by kind.

    synapse: target (4), weight (2) and delay (1 when every delay is below 256 steps,
    else 2) per synapse; index: the CSR row offsets (8 per source row per projection);
    neuron: V, 4 traces, refractory count, parameter-set index (48 per neuron); ring: the
    input ring, 8 bytes per slot, port and neuron; inputs: OU state (48 per neuron and OU
    input) and parameter/input tables; record: the spike record buffer (8 per entry).
    """

    neurons: int
    synapses: int
    synapse_bytes: int
    index_bytes: int
    neuron_bytes: int
    ring_bytes: int
    input_bytes: int
    record_bytes: int

    @property
    def total_bytes(self) -> int:
        return (self.synapse_bytes + self.index_bytes + self.neuron_bytes + self.ring_bytes
                + self.input_bytes + self.record_bytes)

    @property
    def bytes_per_synapse(self) -> float:
        """Synapse storage and its index per synapse (the figure to keep <= 8)."""
        return (self.synapse_bytes + self.index_bytes) / self.synapses if self.synapses else 0.0

    @property
    def bytes_per_neuron(self) -> float:
        """State, ring and inputs per neuron."""
        n = self.neurons
        return (self.neuron_bytes + self.ring_bytes + self.input_bytes) / n if n else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total_bytes": self.total_bytes,
                "bytes_per_synapse": self.bytes_per_synapse,
                "bytes_per_neuron": self.bytes_per_neuron}


NEURON_BYTES = 8 + 4 * 8 + 4 + 4  # V, syn[4], refr, pid


def estimate(n_neurons: int, n_synapses: int, n_rows: int, max_delay_steps: int,
             n_ports: int, n_ou: int, record_entries: int, table_bytes: int = 0
             ) -> DeviceMemory:
    """Device memory of a partition from its counts (before anything is allocated).

    n_rows: CSR rows (sum over projections of their source population's size);
    n_ou: neurons times OU inputs; record_entries: spike record capacity.
    """
    dly = 1 if max_delay_steps < 256 else 2
    return DeviceMemory(
        neurons=n_neurons, synapses=n_synapses,
        synapse_bytes=n_synapses * (4 + 2 + dly),
        index_bytes=(n_rows + 1) * 8,
        neuron_bytes=n_neurons * NEURON_BYTES,
        ring_bytes=(max_delay_steps + 1) * max(1, n_ports) * n_neurons * 8,
        input_bytes=n_ou * 6 * 8 + table_bytes,
        record_bytes=record_entries * 8)


def check_fits(mem: DeviceMemory, free_bytes: int, device: str = "the GPU",
               reserve: float = 0.05) -> None:
    """Raise DeviceMemoryError unless mem fits free_bytes less a reserve fraction (CUDA
    context, CuPy's pool, graphs)."""
    budget = free_bytes * (1.0 - reserve)
    if mem.total_bytes <= budget:
        return
    raise DeviceMemoryError(
        f"{device}: the partition needs {mem.total_bytes / GIB:.2f} GiB but "
        f"{free_bytes / GIB:.2f} GiB are free ({mem.neurons:,} neurons at "
        f"{mem.bytes_per_neuron:.0f} bytes each, ring {mem.ring_bytes / GIB:.2f} GiB; "
        f"{mem.synapses:,} synapses at {mem.bytes_per_synapse:.2f} bytes each; spike "
        f"record {mem.record_bytes / GIB:.2f} GiB) -- run on more ranks/GPUs, or a smaller "
        "model")


def gpu_status() -> dict[str, Any]:
    """cupy's version, whether CUDA is usable, and the names of the visible GPUs (also
    what ``--backend gpu`` checks before building: dtb.engine.gpu.device.gpu_unavailable)."""

    out: dict[str, Any] = {"cupy": None, "cuda_available": False, "gpus": []}
    try:
        import cupy
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        if not isinstance(e, ImportError):
            out["cupy_error"] = f"{type(e).__name__}: {e}"
        return out
    out["cupy"] = cupy.__version__
    try:
        out["cuda_available"] = bool(cupy.cuda.is_available())
        if out["cuda_available"]:
            rt = cupy.cuda.runtime
            out["cuda_runtime"] = rt.runtimeGetVersion()
            for i in range(rt.getDeviceCount()):
                out["gpus"].append(device_name(rt.getDeviceProperties(i)))
    except Exception as e:
        out["cuda_available"] = False
        out["cuda_error"] = f"{type(e).__name__}: {e}"
    return out


def spike_bound(layout: list, P: np.ndarray, pid: np.ndarray) -> list[tuple[int, int, bool]]:
    """Per layout piece with neurons: (neurons, smallest refractory steps, whether every
    neuron resets below threshold), from the packed parameter sets P and each neuron's
    set pid (dtb.model.neurons.pack)."""
    out = []
    for lay in layout:
        if lay.size == 0:
            continue
        sets = P[np.unique(pid[lay.lo:lay.hi])]
        if lay.model == "iaf_psc_exp":
            nref, below = sets[:, R_NREF], sets[:, R_VRESET_REL] < sets[:, R_THETA]
        else:
            nref, below = sets[:, L_NREF], sets[:, L_VRESET] < sets[:, L_VTH]
        out.append((lay.size, int(nref.min()), bool(below.all())))
    return out


def max_spikes(bound: list[tuple[int, int, bool]], m: int) -> int:
    """An upper bound of the spikes of a window of m steps (``bound``: spike_bound's): a
    neuron that resets below threshold spikes at most once per n_ref + 1 steps."""
    return sum(size * (math.ceil(m / (nref + 1)) if below else m)
               for size, nref, below in bound)
