"""The counter-based generator (kernels/philox.py) and the draws built on it.

Independent expectations: Random123's published known-answer vectors for Philox4x32-10
(Salmon et al. 2011), and goodness-of-fit tests against scipy.stats distributions with
fixed seeds (deterministic p-values; sample sizes give power against ~1 % deviations).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import pytest
from scipy import stats

from dtb.kernels import philox as ph

ALPHA = 1e-3


# --- numba helpers ----------------------------------------------------------------------

@nb.njit
def _uniforms(seed, key1, n, index):
    out = np.empty(n)
    for i in range(n):
        w0, w1, w2, w3 = ph.block(seed, key1, i, 0, index, 0)
        out[i] = ph.u01(w0, w1)
    return out


@nb.njit
def _uniform_stream(seed, key1, gid, n):
    """u01 over consecutive `index` values of one (gid) stream."""
    out = np.empty(n)
    for t in range(n):
        w0, w1, w2, w3 = ph.block(seed, key1, gid, 0, t, 0)
        out[t] = ph.u01(w0, w1)
    return out


@nb.njit
def _poissons(lam, seed, key1, n):
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = ph.poisson(lam, seed, key1, i, 0, 7)
    return out


@nb.njit
def _draws(kind, a, b, low, high, seed, key1, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = ph.draw(kind, a, b, low, high, seed, key1, i, 0, 3)
    return out


@nb.njit
def _below_many(n_range, seed, key1, n):
    out = np.empty(n, np.int64)
    for i in range(n):
        w0, w1, w2, w3 = ph.block(seed, key1, i, 0, 0, 0)
        out[i] = ph.below(w0, n_range)
    return out


# --- Philox core: Random123 known-answer vectors ----------------------------------------

KAT = [  # (counter, key, expected) from Random123's kat_vectors, philox4x32 10 rounds
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    out = ph.philox_many(np.array([ctr], np.uint32), np.array(key, np.uint32))
    assert out.dtype == np.uint32
    assert [int(x) for x in out[0]] == list(expected)


def test_philox_many_rows_are_independent_evaluations():
    ctrs = np.array([k[0] for k in KAT[:2]], np.uint32)
    out = ph.philox_many(ctrs, np.array([0, 0], np.uint32))
    assert [int(x) for x in out[0]] == list(KAT[0][2])
    # the all-ones counter under key 0 is not the all-ones-key vector
    assert [int(x) for x in out[1]] != list(KAT[1][2])


def test_block_counter_and_key_layout():
    """block() feeds Philox with the documented layout:
    key = (seed, purpose<<24 | stream), counter = (gid lo, gid hi | sub<<16, index, attempt)."""
    seed, purpose, stream = 0xDEADBEEF, ph.POISSON, 0x123456
    gid, sub, index, attempt = (0x0000_ABCD_1234_5678, 0x0042, 0x89ABCDEF, 17)
    key1 = ph.make_key1(purpose, stream)
    assert int(key1) == (purpose << 24) | stream
    got = ph.block(seed, key1, gid, sub, index, attempt)
    ctr = np.array([[gid & 0xFFFFFFFF, (gid >> 32) | (sub << 16), index, attempt]], np.uint32)
    ref = ph.philox_many(ctr, np.array([seed, int(key1)], np.uint32))[0]
    assert [int(x) for x in got] == [int(x) for x in ref]


def test_make_key1_masks_stream_to_24_bits():
    assert int(ph.make_key1(3, 0x1FFFFFF)) == (3 << 24) | 0xFFFFFF


# --- uniforms ---------------------------------------------------------------------------

def test_u01_uniform_ks():
    u = _uniforms(12345, ph.make_key1(ph.CONNECT, 0), 200_000, 0)
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > ALPHA


def test_u01_stream_over_index_uniform_and_uncorrelated():
    u = _uniform_stream(7, ph.make_key1(ph.POISSON, 3), 99, 100_000)
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    r = np.corrcoef(u[:-1], u[1:])[0, 1]
    assert abs(r) < 5.0 / math.sqrt(len(u))


def test_u01_open_interval_at_extremes():
    """u01 is documented as uniform on the *open* interval (0, 1)."""
    lo = ph.u01(np.uint32(0), np.uint32(0))
    hi = ph.u01(np.uint32(0xFFFFFFFF), np.uint32(0xFFFFFFFF))
    assert lo > 0.0
    assert hi < 1.0, f"u01(0xffffffff, 0xffffffff) = {hi!r}, must be < 1"


def test_different_seeds_and_purposes_give_different_streams():
    a = _uniforms(1, ph.make_key1(ph.CONNECT, 0), 1000, 0)
    b = _uniforms(2, ph.make_key1(ph.CONNECT, 0), 1000, 0)
    c = _uniforms(1, ph.make_key1(ph.WEIGHT, 0), 1000, 0)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.15
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.15
    assert not np.any(a == b) and not np.any(a == c)


def test_below_uniform_integers_chi_square():
    n_range = 37
    x = _below_many(n_range, 5, ph.make_key1(ph.CONNECT, 1), 185_000)
    assert x.min() >= 0 and x.max() < n_range
    counts = np.bincount(x, minlength=n_range)
    assert stats.chisquare(counts).pvalue > ALPHA


# --- Poisson sampler --------------------------------------------------------------------

def _pooled_chi_square(x: np.ndarray, lam: float) -> float:
    """Chi-square p-value of integer samples against Poisson(lam), tails pooled so every
    bin expects at least 5."""
    n = len(x)
    dist = stats.poisson(lam)
    lo = int(dist.ppf(1e-6))
    hi = int(dist.isf(1e-6))
    # merge the tails into the edge bins
    while lo > 0 and n * dist.cdf(lo) < 5:
        lo += 1
    while n * dist.sf(hi - 1) < 5:
        hi -= 1
    ks = np.arange(lo, hi + 1)
    exp = n * dist.pmf(ks)
    exp[0] = n * dist.cdf(lo)
    exp[-1] = n * dist.sf(hi - 1)
    obs = np.array([np.sum(x == k) for k in ks], float)
    obs[0] = np.sum(x <= lo)
    obs[-1] = np.sum(x >= hi)
    assert obs.sum() == n
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("lam", [0.5, 3.0, 10.0, 25.0, 200.0])
def test_poisson_matches_scipy(lam):
    n = 200_000
    x = _poissons(lam, 2024, ph.make_key1(ph.POISSON, 11), n)
    assert x.min() >= 0
    # mean and variance within 5 standard errors (Poisson: var(s^2) ~ (lam + 2 lam^2) / n)
    assert abs(x.mean() - lam) < 5.0 * math.sqrt(lam / n)
    assert abs(x.var(ddof=1) - lam) < 5.0 * math.sqrt((lam + 2.0 * lam * lam) / n)
    assert _pooled_chi_square(x, lam) > ALPHA


def test_poisson_zero_rate():
    assert ph.poisson(0.0, 1, ph.make_key1(ph.POISSON, 0), 0, 0, 0) == 0


# --- distributions via draw() -----------------------------------------------------------

def test_normal_draw_ks():
    x = _draws(ph.D_NORMAL, 1.5, 0.75, -math.inf, math.inf, 9, ph.make_key1(ph.DELAY, 2),
               100_000)
    assert stats.kstest(x, stats.norm(1.5, 0.75).cdf).pvalue > ALPHA


def test_normal_redraw_respects_bounds_and_is_truncated_normal():
    mean, sd, low, high = 0.0, 1.0, -0.5, 2.0
    x = _draws(ph.D_NORMAL, mean, sd, low, high, 9, ph.make_key1(ph.WEIGHT, 4), 100_000)
    assert x.min() >= low and x.max() <= high
    ref = stats.truncnorm((low - mean) / sd, (high - mean) / sd, loc=mean, scale=sd)
    assert stats.kstest(x, ref.cdf).pvalue > ALPHA


def test_lognormal_draw_ks_and_bounds():
    mu, sigma = 0.3, 0.6
    x = _draws(ph.D_LOGNORMAL, mu, sigma, 0.0, math.inf, 3, ph.make_key1(ph.PARAM, 1), 100_000)
    assert stats.kstest(x, stats.lognorm(s=sigma, scale=math.exp(mu)).cdf).pvalue > ALPHA
    y = _draws(ph.D_LOGNORMAL, mu, sigma, 1.0, 3.0, 3, ph.make_key1(ph.PARAM, 1), 50_000)
    assert y.min() >= 1.0 and y.max() <= 3.0


def test_uniform_and_constant_draw():
    x = _draws(ph.D_UNIFORM, -2.0, 5.0, -math.inf, math.inf, 4, ph.make_key1(ph.PARAM, 2),
               100_000)
    assert x.min() > -2.0 and x.max() < 5.0
    assert stats.kstest(x, stats.uniform(-2.0, 7.0).cdf).pvalue > ALPHA
    c = _draws(ph.D_CONSTANT, 3.25, 0.0, -math.inf, math.inf, 4, ph.make_key1(ph.PARAM, 2), 10)
    assert np.all(c == 3.25)


def test_draw_per_neuron_is_a_function_of_gid():
    """Per-neuron draws depend on the global id only, not on where a range starts."""
    key1 = ph.make_key1(ph.PARAM, 5)
    whole = ph.draw_per_neuron(ph.D_NORMAL, -58.0, 10.0, -math.inf, math.inf, 1, key1, 100, 500)
    part = ph.draw_per_neuron(ph.D_NORMAL, -58.0, 10.0, -math.inf, math.inf, 1, key1, 350, 100)
    np.testing.assert_array_equal(whole[250:350], part)
    assert stats.kstest(whole, stats.norm(-58.0, 10.0).cdf).pvalue > ALPHA
