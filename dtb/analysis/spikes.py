"""Reading SONATA spike files in chunks, and spike-train statistics that never need every
spike in memory at once.

Files written by dtb are sorted by (node id, time) (``sorting = "by_id"``): one neuron's
spikes are contiguous, so a neuron's train is found by binary search and statistics per
neuron stream through the file in chunks, carrying over the neuron cut at a chunk's end.
Times are in ms, rates in Hz.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dtb.errors import ArgumentError
from dtb.io.sonata import read_sorting

DEFAULT_CHUNK = 1 << 22  # spikes read at a time (64 MiB of times and ids)


class SpikeReader:
    """A SONATA spike file (``spikes.h5``) opened for chunked reading.

    ``sizes``: {population: neurons}, when known (from the run's manifest), for rates;
    ``chunk``: spikes per read.  Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path, sizes: dict[str, int] | None = None,
                 chunk: int = DEFAULT_CHUNK):

        self.path = Path(path)
        self._f = h5py.File(self.path, "r")
        self.sizes = dict(sizes or {})
        self.chunk = int(chunk)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SpikeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        pops = ", ".join(f"{p} ({self.count(p):,})" for p in self.populations)
        return f"SpikeReader({str(self.path)!r}: {pops})"

    @property
    def populations(self) -> list[str]:
        return list(self._f["spikes"])

    def sorting(self, population: str) -> str:
        """How the population's spikes are sorted: none, by_id or by_time (SONATA)."""

        return read_sorting(self._f["spikes"][population].attrs)

    def count(self, population: str) -> int:
        """Spikes of the population in the file."""
        return int(self._f["spikes"][population]["timestamps"].shape[0])

    def _ds(self, population: str) -> tuple[Any, Any]:
        g = self._f["spikes"][population]
        return g["timestamps"], g["node_ids"]

    def chunks(self, population: str, chunk: int | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (timestamps ms float64, node ids int64) in file order, ``chunk`` at a time."""
        ts, ids = self._ds(population)
        n = ts.shape[0]
        step = int(chunk or self.chunk)
        for a in range(0, n, step):
            z = min(n, a + step)
            yield ts[a:z], ids[a:z].astype(np.int64)

    def neurons(self, population: str, chunk: int | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield blocks of whole neurons: (node ids (k,), offsets (k+1,), times) where the
        spikes of ids[i] are times[offsets[i]:offsets[i+1]], in increasing time.  Needs a
        file sorted by id."""
        self._need_by_id(population)
        carry_t = np.zeros(0)
        carry_i = np.zeros(0, np.int64)
        for t, i in self.chunks(population, chunk):
            t = np.concatenate([carry_t, t])
            i = np.concatenate([carry_i, i])
            last = i[-1]
            cut = np.searchsorted(i, last, side="left")  # the last neuron may go on
            carry_t, carry_i = t[cut:], i[cut:]
            if cut:
                yield _group(t[:cut], i[:cut])
        if len(carry_i):
            yield _group(carry_t, carry_i)

    def train(self, population: str, node_id: int) -> np.ndarray:
        """The spike times (ms) of one neuron (binary search: O(log n) small reads)."""
        self._need_by_id(population)
        ts, ids = self._ds(population)
        a = _search(ids, node_id)
        z = _search(ids, node_id + 1)
        return ts[a:z]

    def trains(self, population: str, node_ids: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """Spike times (ms) of each of ``node_ids``."""
        return [self.train(population, int(n)) for n in node_ids]

    def _need_by_id(self, population: str) -> None:
        if self.sorting(population) != "by_id":
            raise ArgumentError(f"{self.path}: /spikes/{population} is sorted "
                                f"{self.sorting(population)!r} -- expected 'by_id' (as dtb "
                                "writes it) for per-neuron access")


def _group(t: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    return i[starts], np.r_[starts, len(i)], t


def _search(ds: Any, value: int) -> int:
    """First index of a sorted 1-D dataset with ds[k] >= value (binary search, few reads)."""
    lo, hi = 0, ds.shape[0]
    block = 4096
    while hi - lo > block:
        mid = (lo + hi) // 2
        if int(ds[mid]) < value:
            lo = mid + 1
        else:
            hi = mid
    seg = ds[lo:hi].astype(np.int64)
    return lo + int(np.searchsorted(seg, value, side="left"))


# --- statistics on arrays -------------------------------------------------------------------

def cv_isi_grouped(ids: np.ndarray, offsets: np.ndarray, times: np.ndarray,
                   min_spikes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """CV of inter-spike intervals of each neuron of a block (see SpikeReader.neurons):
    (node ids, CV) for neurons with at least ``min_spikes`` spikes.  CV = std / mean of the
    intervals (population standard deviation).

    ``ids`` (k,), ``offsets`` (k+1,) and ``times`` (ms) as SpikeReader.neurons yields them;
    a neuron may have no spikes (offsets[i] == offsets[i+1]), anywhere in the block."""
    ids, offsets = np.asarray(ids), np.asarray(offsets, np.int64)
    times = np.asarray(times, np.float64)
    n = np.diff(offsets)
    isi = np.diff(times)
    same = np.ones(len(times), bool)
    # the first spike of a neuron starts no interval; a silent neuron has no first spike
    # (its offset may be len(times), when it is last)
    same[offsets[:-1][n > 0]] = False
    isi = isi[same[1:]]
    owner = np.repeat(np.arange(len(ids)), np.maximum(n - 1, 0))
    k = np.bincount(owner, minlength=len(ids)).astype(float)
    s1 = np.bincount(owner, weights=isi, minlength=len(ids))
    s2 = np.bincount(owner, weights=isi * isi, minlength=len(ids))
    ok = n >= min_spikes
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / k
        var = np.maximum(s2 / k - mean * mean, 0.0)
        cv = np.sqrt(var) / mean
    return ids[ok], cv[ok]


def cv_isi(reader: SpikeReader, population: str, min_spikes: int = 3,
           chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CV of the inter-spike intervals of every neuron of ``population`` with at least
    ``min_spikes`` spikes: (node ids (k,), CV (k,)), streaming through the file.  A Poisson
    train has CV 1, a gamma train of order k 1/sqrt(k), a regular one 0."""
    out_i, out_c = [], []
    for ids, off, t in reader.neurons(population, chunk):
        i, c = cv_isi_grouped(ids, off, t, min_spikes)
        out_i.append(i)
        out_c.append(c)
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_i), np.concatenate(out_c)


def binned_counts(trains: Sequence[np.ndarray], t_start: float, t_stop: float,
                  bin_ms: float) -> np.ndarray:
    """Spike counts of each train in bins [t_start + k bin, t_start + (k+1) bin):
    (n_trains, n_bins) int64."""
    n_bins = int(np.floor((t_stop - t_start) / bin_ms + 1e-9))
    edges = t_start + bin_ms * np.arange(n_bins + 1)
    return np.array([np.histogram(t, edges)[0] for t in trains], np.int64).reshape(
        len(trains), n_bins)


def count_correlation(reader: SpikeReader, population: str, bin_ms: float, t_start: float,
                      t_stop: float, n_pairs: int = 100, seed: int = 0,
                      node_ids: Sequence[int] | np.ndarray | None = None,
                      size: int | None = None) -> np.ndarray:
    """Pearson correlation coefficients of the spike counts (bins of ``bin_ms``) of
    ``n_pairs`` random pairs of distinct neurons of ``population`` (drawn from ``node_ids``,
    default every neuron 0 .. size-1): (n_pairs,), NaN for a pair with a silent neuron.
    Only the sampled neurons' trains are read."""
    rng = np.random.default_rng(seed)
    if node_ids is None:
        size = size or reader.sizes.get(population)
        if not size:
            raise ArgumentError(f"{population}: population size unknown -- pass size= or "
                                "node_ids=")
        ids = np.arange(size)
    else:
        ids = np.asarray(node_ids)
    if len(ids) < 2:
        raise ArgumentError(f"{population}: {len(ids)} neurons -- expected 2 or more")
    a = rng.integers(0, len(ids), n_pairs)
    b = (a + rng.integers(1, len(ids), n_pairs)) % len(ids)
    pairs = np.stack([ids[a], ids[b]], 1)
    need = np.unique(pairs)
    counts = binned_counts(reader.trains(population, need), t_start, t_stop, bin_ms)
    row = {int(n): k for k, n in enumerate(need)}
    x = counts[[row[int(p)] for p in pairs[:, 0]]].astype(float)
    y = counts[[row[int(p)] for p in pairs[:, 1]]].astype(float)
    return _pearson_rows(x, y)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(1) / den, np.nan)


def population_rate(reader: SpikeReader, population: str, bin_ms: float, t_stop: float,
                    t_start: float = 0.0, size: int | None = None,
                    chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The population's rate in bins (t, t + bin_ms] (spike times are step ends): (bin
    starts ms (n_bins,), Hz per neuron (n_bins,)), streaming through the file."""
    size = size or reader.sizes.get(population)
    if not size:
        raise ArgumentError(f"{population}: population size unknown -- pass size=")
    n_bins = int(np.ceil((t_stop - t_start) / bin_ms - 1e-9))
    counts = np.zeros(n_bins, np.int64)
    for t, _ in reader.chunks(population, chunk):
        k = np.ceil((t - t_start) / bin_ms - 1e-9).astype(np.int64) - 1
        k = k[(k >= 0) & (k < n_bins)]
        counts += np.bincount(k, minlength=n_bins)
    starts = t_start + bin_ms * np.arange(n_bins)
    width = np.minimum(bin_ms, t_stop - starts)
    return starts, counts / (size * width * 1e-3)
