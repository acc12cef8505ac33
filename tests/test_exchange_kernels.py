"""The exchange's packing (kernels/exchange.py) against a plain-Python model of it, without
MPI: what a rank packs for each peer, once that peer unpacks it with the request list it
sent, must name the same spikes (step, population, index) the sender emitted."""

from __future__ import annotations

import numpy as np

from dtb.kernels import exchange as kx


def _tables(rng, n_local, n_peers):
    """A send table: local neuron i is wanted by some peers, each at a position of its
    request list; the request lists themselves (global ids) as each peer sent them."""
    gid0 = 1000  # this rank's neurons are global ids gid0 .. gid0 + n_local - 1
    requests = []  # per peer: the global ids it asked for, in its order
    for _ in range(n_peers):
        wanted = rng.choice(n_local, size=rng.integers(1, n_local), replace=False)
        requests.append(gid0 + wanted)
    entries = sorted((int(g - gid0), p, pos) for p, req in enumerate(requests)
                     for pos, g in enumerate(req))
    send_ptr = np.zeros(n_local + 1, np.int64)
    for i, _, _ in entries:
        send_ptr[i + 1] += 1
    send_ptr = np.cumsum(send_ptr)
    send_peer = np.array([p for _, p, _ in entries], np.int64)
    send_pos = np.array([pos for _, _, pos in entries], np.int64)
    return gid0, requests, send_ptr, send_peer, send_pos


def test_packed_spikes_unpack_to_what_was_sent():
    rng = np.random.default_rng(3)
    n_local, n_peers, t0, m = 40, 3, 5000, 7
    gid0, requests, send_ptr, send_peer, send_pos = _tables(rng, n_local, n_peers)
    k = 60
    idx = rng.integers(0, n_local, k).astype(np.int64)
    steps = (t0 + rng.integers(0, m, k)).astype(np.int64)
    counts, data = kx.encode(k, steps, idx, t0, send_ptr, send_peer, send_pos, n_peers)
    # populations of the global id space: [0, 900), [900, 1020), [1020, ...)
    pop_gid0 = np.array([0, 900, 1020], np.int64)
    o = 0
    for p in range(n_peers):
        block = data[o:o + counts[p]]
        o += counts[p]
        # peer p receives only this rank's block: one source peer
        out = [np.empty(len(block), np.int64) for _ in range(3)]
        req = requests[p].astype(np.int64)
        n = kx.decode(block, np.array([len(block)], np.int64), t0, req,
                      np.array([0, len(req)], np.int64), pop_gid0, *out)
        got = sorted(zip(*(o[:n].tolist() for o in out), strict=True))
        want = []
        for s, i in zip(steps.tolist(), idx.tolist(), strict=True):
            g = gid0 + i
            if g in set(requests[p].tolist()):
                pop = int(np.searchsorted(pop_gid0, g, side="right") - 1)
                want.append((s, pop, g - int(pop_gid0[pop])))
        assert got == sorted(want)
        assert counts[p] == len(want)
    assert o == len(data)


def test_decode_reads_several_source_peers_in_order():
    # two source peers, each sent what the receiver asked of it
    request = np.array([7, 3, 11, 20, 21], np.int64)  # peer 0: 7, 3, 11; peer 1: 20, 21
    off = np.array([0, 3, 5], np.int64)
    recv = np.array([(2 << 16) | 1, (0 << 16) | 0, (1 << 16) | 3], np.int64)
    rcounts = np.array([2, 1], np.int64)
    out = [np.empty(3, np.int64) for _ in range(3)]
    n = kx.decode(recv, rcounts, 100, request, off, np.array([0, 10], np.int64), *out)
    assert n == 3
    assert out[0].tolist() == [101, 100, 103]
    assert out[1].tolist() == [1, 0, 1]  # global ids 11, 7, 21
    assert out[2].tolist() == [1, 7, 11]


def test_hooks_are_registered_and_dropped():
    key = kx.register(lambda c, d: (d[::-1], c))
    recv, rc = kx.call_hook(key, np.array([2], np.int64), np.array([1, 2], np.int64))
    assert recv.tolist() == [2, 1] and rc.tolist() == [2]
    kx.unregister(key)
    assert key not in kx._HOOKS
