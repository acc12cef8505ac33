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

#: a hook takes (counts per destination peer, packed spikes peer-major), the blocks of
#: ``pack_blocks`` being ready to send, and returns (overflow codes received, their offsets
#: per source peer, 1 if the blocks were replaced after this window else 0): what
#: dtb.engine.transfer.BlockTransfer.swap does
Hook = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, int]]

_HOOKS: dict[int, Hook] = {}
_KEYS = itertools.count(1)


def register(hook: Hook) -> int:
    """Make ``hook`` callable from compiled code under the returned key."""
    key = next(_KEYS)
    _HOOKS[key] = hook
    return key


def unregister(key: int) -> None:
    _HOOKS.pop(key, None)


def call_hook(key: int, counts: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Run hook ``key`` (from object mode inside a compiled loop)."""
    return _HOOKS[key](counts, data)


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


@nb.njit(cache=True)
def pack_blocks(counts, data, block, cap):
    """Fixed-size blocks of one window's packed spikes: row p of ``block`` (peers, cap + 1)
    gets peer p's count and its first ``cap`` codes (``data`` peer-major, ``counts`` per
    peer); codes beyond ``cap`` travel separately (the caller's overflow)."""
    o = 0
    for p in range(counts.shape[0]):
        c = counts[p]
        block[p, 0] = c
        for j in range(min(c, cap)):
            block[p, 1 + j] = data[o + j]
        o += c


@nb.njit(cache=True)
def unpack_blocks(block, cap, extra, extra_off):
    """The inverse of ``pack_blocks`` on the receiving side: (codes, source-peer-major;
    counts per source peer) from the received ``block`` rows and, for sources whose count
    exceeded ``cap``, their remaining codes extra[extra_off[r]:extra_off[r + 1]]."""
    n_src = block.shape[0]
    rcounts = np.empty(n_src, np.int64)
    total = 0
    for r in range(n_src):
        rcounts[r] = block[r, 0]
        total += block[r, 0]
    out = np.empty(total, np.int64)
    o = 0
    for r in range(n_src):
        c = rcounts[r]
        k = min(c, cap)
        for j in range(k):
            out[o + j] = block[r, 1 + j]
        for j in range(c - k):
            out[o + k + j] = extra[extra_off[r] + j]
        o += c
    return out, rcounts
