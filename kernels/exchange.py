"""The spike exchange's compiled half: packing a window's spikes for the peers that asked
for them, unpacking what arrived, and the hook through which a compiled time loop hands
the packed spikes to the MPI layer (dtb.engine.exchange) and gets the peers' back.

A packed spike is one int64: ``position in the peer's request list << 16 | step offset in
the window``.  The MPI calls stay in Python (mpi4py); a compiled loop reaches them through
``numba.objmode`` and a registry of hooks keyed by an integer, so the loop itself (and its
on-disk cache) holds no Python object."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numba as nb
import numpy as np

#: a hook takes (counts per destination peer, packed spikes peer-major) and returns
#: (packed spikes received, source-peer-major; counts per source peer)
Hook = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_HOOKS: dict[int, Hook] = {}
_KEYS = itertools.count(1)


def register(hook: Hook) -> int:
    """Make ``hook`` callable from compiled code under the returned key."""
    key = next(_KEYS)
    _HOOKS[key] = hook
    return key


def unregister(key: int) -> None:
    _HOOKS.pop(key, None)


def call_hook(key: int, counts: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run hook ``key`` (from object mode inside a compiled loop)."""
    recv, rcounts = _HOOKS[key](counts, data)
    return np.ascontiguousarray(recv, np.int64), np.ascontiguousarray(rcounts, np.int64)


@nb.njit(cache=True)
def encode(n_spk, steps, idx, t0, send_ptr, send_peer, send_pos, n_peers):
    """Per-peer counts (n_peers,) and the packed spikes (peer-major) of one window:
    spikes ``steps[:n_spk]`` (step numbers) of engine-local neurons ``idx[:n_spk]``, the
    window starting at step t0.  Local neuron i goes to peers send_peer[send_ptr[i] :
    send_ptr[i + 1]] at positions send_pos[...] of their request lists."""
    counts = np.zeros(n_peers, np.int64)
    for j in range(n_spk):
        for e in range(send_ptr[idx[j]], send_ptr[idx[j] + 1]):
            counts[send_peer[e]] += 1
    offs = np.zeros(n_peers + 1, np.int64)
    for p in range(n_peers):
        offs[p + 1] = offs[p] + counts[p]
    out = np.empty(offs[n_peers], np.int64)
    fill = offs[:-1].copy()
    for j in range(n_spk):
        code = steps[j] - t0
        for e in range(send_ptr[idx[j]], send_ptr[idx[j] + 1]):
            p = send_peer[e]
            out[fill[p]] = (send_pos[e] << 16) | code
            fill[p] += 1
    return counts, out


@nb.njit(cache=True)
def decode(recv, rcounts, t0, request, request_off, pop_gid0, out_step, out_pop, out_idx):
    """Unpack ``recv`` (source-peer-major, rcounts per source peer) of the window starting
    at step t0: source peer r asked for the global ids request[request_off[r] :
    request_off[r + 1]].  Writes each spike's step, source population and index within
    that population (the out_* arrays, at least len(recv) long)."""
    o = 0
    for r in range(rcounts.shape[0]):
        base = request_off[r]
        for _ in range(rcounts[r]):
            code = recv[o]
            gid = request[base + (code >> 16)]
            pop = np.searchsorted(pop_gid0, gid, side="right") - 1
            out_step[o] = t0 + (code & 0xFFFF)
            out_pop[o] = pop
            out_idx[o] = gid - pop_gid0[pop]
            o += 1
    return o
