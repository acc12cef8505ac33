"""The atom graph: the traffic between atoms that the partitioner weighs (``atom_graph``)
and the weight of keeping a region together (``compactness``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from dtb.partition.model import Atoms, _Model, _per_atom

# --- the atom graph ----------------------------------------------------------------------

def _lr_weights(m: _Model, at: Atoms) -> list[np.ndarray]:
    """Per long-range rule, K (A,): the rule's incoming synapses of every atom."""
    whole = at.pieces == 1
    out = []
    for _, t, k, _, _ in m.lr:
        kk = np.empty(len(at))
        kk[whole] = _per_atom(k * m.sizes[t], at.unit_lo[whole], at.unit_hi[whole])
        kk[~whole] = k[at.unit_lo[~whole]] * at.sizes[t, ~whole]
        out.append(kk)
    return out


def _source_z(m: _Model, at: Atoms, kw: list[np.ndarray], v: int, f: int) -> np.ndarray:
    """(A,) expected long-range synapses from one neuron of family f in region v onto
    each atom."""
    z = np.zeros(len(at))
    if m.region_neurons[f, v] <= 0:
        return z
    for (s, _, _, p, _), kk in zip(m.lr, kw, strict=True):
        if s == f:
            z += p[at.region, v] * kk
    return z / m.region_neurons[f, v]


def _region_members(at: Atoms, n_regions: int) -> list[np.ndarray]:
    order = np.argsort(at.region, kind="stable")
    bounds = np.searchsorted(at.region[order], np.arange(n_regions + 1))
    return [order[bounds[g]:bounds[g + 1]] for g in range(n_regions)]


@dataclass
class _EdgeClass:
    """Atom pairs whose traffic the graph must carry: pairs (a, b) of ``a`` x ``b``
    (``b`` None: unordered pairs within ``a``) with weight ``total * fa fb / sum(fa fb)``
    (spikes/s), or the exact matrix ``exact`` (|a|, |b|) where it is known."""

    a: np.ndarray
    b: np.ndarray | None
    fa: np.ndarray
    fb: np.ndarray
    total: float
    exact: np.ndarray | None = None

    @property
    def candidates(self) -> int:
        n = len(self.a)
        return n * (n - 1) // 2 if self.b is None else n * len(self.b)


def _lr_classes(m: _Model, at: Atoms, rate_hz: float, members: list[np.ndarray],
                keep_exact: bool, compact: np.ndarray | None = None) -> list[_EdgeClass]:
    """Long-range traffic per ordered region pair (v -> h), and per region h the traffic
    its atoms save by sharing a rank (their sources are then sent once, not once per
    atom: sum_i e_i - (1 - exp(-sum_i z_i)) per source neuron, capped at the pairwise
    sum of e_i e_j that the graph's pairs can represent), plus ``compact`` (G,): the
    messages it saves (see ``compactness``)."""
    kw = _lr_weights(m, at)
    k_lr = np.sum(kw, axis=0) if kw else np.zeros(len(at))
    out: list[_EdgeClass] = []
    saving = np.zeros(m.n_regions)
    pairwise = np.zeros(m.n_regions)
    for v in range(m.n_regions):
        src = members[v]
        e = np.zeros((m.n_fam, len(at)))  # probability a neuron of (v, f) reaches an atom
        for f in range(m.n_fam):
            z = _source_z(m, at, kw, v, f)
            e[f] = -np.expm1(-z)
            zs = np.bincount(at.region, weights=z, minlength=m.n_regions)
            es = np.bincount(at.region, weights=e[f], minlength=m.n_regions)
            e2 = np.bincount(at.region, weights=e[f] ** 2, minlength=m.n_regions)
            n_vf = rate_hz * m.region_neurons[f, v]
            saving += n_vf * (es + np.expm1(-zs))
            pairwise += n_vf * 0.5 * (es ** 2 - e2)
        if not len(src):
            continue
        n_src = at.sizes[:, src].astype(float)  # (F, |src|)
        for h in range(m.n_regions):
            dst = members[h]
            ed = e[:, dst]
            if not len(dst) or not ed.any():
                continue
            fa = n_src.T @ ed.sum(axis=1)  # exact marginals of the (src, dst) matrix
            fb = n_src.sum(axis=1) @ ed
            tot = rate_hz * float(fa.sum())
            if tot <= 0:
                continue
            mat = rate_hz * (n_src.T @ ed) if keep_exact else None
            out.append(_EdgeClass(src, dst, fa, fb, tot, mat))
    share = np.minimum(np.maximum(saving, 0.0), pairwise)
    if compact is not None:
        share = share + compact
    for h, ids in enumerate(members):
        if len(ids) > 1 and share[h] > 0 and k_lr[ids].sum() > 0:
            out.append(_EdgeClass(ids, None, k_lr[ids], k_lr[ids], float(share[h])))
    return out


def _cut_groups(at: Atoms) -> list[np.ndarray]:
    """Indices of the blocks of each cut unit (blocks of a unit are consecutive)."""
    cut = np.flatnonzero(at.pieces > 1)
    if not len(cut):
        return []
    brk = np.flatnonzero(np.diff(at.unit_lo[cut]) != 0) + 1
    return np.split(cut, brk)


def _block_classes(m: _Model, at: Atoms, rate_hz: float) -> list[_EdgeClass]:
    """Unit-local traffic among the blocks of each cut unit (spikes/s, both ways)."""
    out = []
    for ids in _cut_groups(at):
        u = int(at.unit_lo[ids[0]])
        tot = 0.0
        for s, t, k, _ in m.local:
            if m.sizes[s, u] <= 0 or k[u] <= 0:
                continue
            e = -np.expm1(-k[u] * at.sizes[t, ids] / m.sizes[s, u])
            n = at.sizes[s, ids].astype(float)
            tot += rate_hz * float(n.sum() * e.sum() - n @ e)  # ordered pairs a != b
        f = at.sizes[:, ids].sum(axis=0).astype(float)
        if tot > 0 and f.sum() > 0:
            out.append(_EdgeClass(ids, None, f, f, tot))
    return out


def _class_edges(c: _EdgeClass, n: int | None, rng) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """The class's edges: all pairs (n None) or n pairs drawn with probability
    proportional to fa fb, each carrying total / n (an unbiased estimate of every cut)."""
    if n is None:
        if c.exact is not None:
            assert c.b is not None, "an exact matrix is between two sets of atoms"
            i, j = np.nonzero(c.exact)
            return c.a[i], c.b[j], c.exact[i, j]
        if c.b is None:
            i, j = np.triu_indices(len(c.a), 1)
            w = c.fa[i] * c.fa[j]
            return c.a[i], c.a[j], c.total * w / w.sum()
        w = np.outer(c.fa, c.fb)
        i, j = np.nonzero(w)
        return c.a[i], c.b[j], c.total * w[i, j] / w.sum()
    pa = c.fa / c.fa.sum()
    pb = c.fb / c.fb.sum()
    i = rng.choice(len(c.a), n, p=pa)
    j = rng.choice(len(c.a) if c.b is None else len(c.b), n, p=pb)
    if c.b is None:
        keep = i != j
        i, j = i[keep], j[keep]
        return c.a[i], c.a[j], np.full(len(i), c.total / max(1, len(i)))
    return c.a[i], c.b[j], np.full(n, c.total / n)


def compactness(m: _Model, unit_cost: np.ndarray, ranks: int, message: float,
                rate_hz: float) -> np.ndarray:
    """(G,) spikes/s: the weight of keeping each region's atoms together, in spike
    equivalents of the messages it saves.

    Every extra rank a region h is spread over exchanges about ``2 P phi_h`` more
    messages per window, phi_h the cost share of the regions h sends to or receives from
    (their ranks are its peers); at ``1000 / window`` windows a second (the shortest
    tract delay) and ``message`` spikes a message that is ``term_h`` spikes/s.  The
    graph spreads a region's weight W over all pairs of its atoms, so cutting it into k
    parts costs ``W (1 - 1 / k)``; W = term_h max(2, m_h^2), m_h the ranks the region
    needs at least, makes the last cut cost term_h, as the messages say."""
    g = m.n_regions
    if message <= 0 or ranks <= 1:
        return np.zeros(g)
    conn = np.zeros((g, g), bool)
    window = math.inf
    for *_, p, d in m.lr:
        conn |= p > 0
        if np.any(p > 0):
            window = min(window, d + float(m.conduction_ms[p > 0].min()))
    if not math.isfinite(window):  # no long-range rules: nothing to keep together
        return np.zeros(g)
    conn = conn | conn.T
    np.fill_diagonal(conn, False)
    c_reg = np.bincount(m.region, weights=unit_cost, minlength=g)
    phi = (conn.astype(float) @ c_reg) / c_reg.sum()
    term = message * (1000.0 / max(window, 1e-3)) * 2.0 * ranks * phi
    need = c_reg / (c_reg.sum() / ranks)
    return term * np.maximum(2.0, need ** 2)


def atom_graph(m: _Model, at: Atoms, rate_hz: float, max_edges: int = 4_000_000,
               seed: int = 0, compact: np.ndarray | None = None):
    """The symmetric atom graph (scipy CSR, spikes/s both ways) and whether its edges are
    exact (all atom pairs) or sampled.

    Edge classes: long-range traffic per region pair, the shared-source saving within
    each region, and the unit-local traffic among a cut unit's blocks.  When all their
    atom pairs number at most ``max_edges`` every pair is an edge with its own weight.
    Otherwise each class gets a share of ``max_edges`` in proportion to its traffic (at
    least one edge per atom of a region's own class, which keeps regions connected) and
    its pairs are *sampled* with probability proportional to the product of the two
    atoms' marginal traffic, each edge carrying total / samples: then the expected
    weight of every cut equals the model's, as in spectral sparsification.  (Replacing a
    region pair by a few "representative" edges with the pair's whole traffic would not
    do: it tells the partitioner that putting those two atoms together saves all of it.)
    """

    members = _region_members(at, m.n_regions)
    count = np.array([len(x) for x in members], float)
    lr_pairs = sum(float(count @ (p > 0).T @ count) for *_, p, _ in m.lr)
    exact = lr_pairs + float(count @ count) / 2 <= 2 * max_edges
    classes = _lr_classes(m, at, rate_hz, members, keep_exact=exact, compact=compact)
    classes += _block_classes(m, at, rate_hz)
    cand = np.array([c.candidates for c in classes], float)
    exact = exact and cand.sum() <= max_edges
    rng = np.random.default_rng(seed)
    tot = np.array([c.total for c in classes])
    parts = []
    for c, n_c, t_c in zip(classes, cand, tot, strict=True):
        n = None
        if not exact:
            want = max_edges * t_c / tot.sum()
            if c.b is None:
                want = max(want, len(c.a))
            want = max(1, int(math.ceil(want)))
            n = None if want >= n_c else want
        parts.append(_class_edges(c, n, rng))
    n_at = len(at)
    if parts:
        i = np.concatenate([p[0] for p in parts])
        j = np.concatenate([p[1] for p in parts])
        w = np.concatenate([p[2] for p in parts])
    else:
        i = j = np.zeros(0, np.int64)
        w = np.zeros(0)
    g = sp.coo_matrix((w, (i, j)), shape=(n_at, n_at)).tocsr()
    g = (g + g.T).tocsr()
    g.setdiag(0.0)
    g.eliminate_zeros()
    return g, exact
