"""Delivery against a plain numpy scatter, on both sides of the prefetch threshold.

Rings larger than ``PREFETCH_BYTES`` take the loop with software prefetches
(kernels/prefetch.py); the sums must not depend on which loop ran, on the number of
target ranges (threads), or on the order of the spikes."""

from __future__ import annotations

import numpy as np
import pytest

from dtb.kernels.bundles import Synapses
from dtb.kernels.delivery import AHEAD, PREFETCH_BYTES, deliver


def _network(n: int, n_src: int, per_row: int, seed: int) -> Synapses:
    """One projection from n_src sources onto n targets, rows of per_row sorted targets
    (some rows shorter than the prefetch distance), random delays and weights."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, per_row, n_src)
    lengths[:3] = (0, AHEAD - 1, AHEAD + 1)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tgt = np.concatenate([np.sort(rng.choice(n, k, replace=False)) for k in lengths])
    s = int(indptr[-1])
    return Synapses(row0=np.array([0], np.int64), post_lo=np.array([0], np.int64),
                    post_hi=np.array([n], np.int64), port=np.array([1], np.int64),
                    shift=np.array([5], np.int64), indptr=indptr,
                    tgt=tgt.astype(np.uint32),
                    wq=rng.integers(-2000, 2000, s).astype(np.int16),
                    dly=rng.integers(1, 59, s).astype(np.uint16))


def _expected(ring_shape, syn: Synapses, steps, srcs) -> np.ndarray:
    ring = np.zeros(ring_shape, np.int64)
    for st, r in zip(steps, srcs, strict=True):
        a, z = syn.indptr[r], syn.indptr[r + 1]
        slots = (st + syn.dly[a:z].astype(np.int64)) % ring_shape[0]
        np.add.at(ring, (slots, 1, syn.tgt[a:z].astype(np.int64)),
                  syn.wq[a:z].astype(np.int64) << 5)
    return ring


@pytest.mark.parametrize("n", [5_000, 40_000])
@pytest.mark.parametrize("n_parts", [1, 3])
def test_delivery_equals_a_numpy_scatter(n, n_parts):
    D = 60
    far = D * 2 * n * 8 > PREFETCH_BYTES
    assert far == (n == 40_000)   # one case on each side of the threshold
    syn = _network(n, 200, 400, seed=n)
    rng = np.random.default_rng(1)
    k = 150
    steps = rng.integers(0, 10_000, k).astype(np.int64)
    srcs = rng.integers(0, 200, k).astype(np.int64)
    srcs[:3] = (0, 1, 2)
    ring = np.zeros((D, 2, n), np.int64)
    deliver(k, steps, np.zeros(k, np.int64), srcs, np.array([0, 1], np.int64),
            np.array([0], np.int64), syn, ring, n_parts)
    np.testing.assert_array_equal(ring, _expected(ring.shape, syn, steps, srcs))
