"""The brain builder (dtb.brain.build, BrainSpec, dtb build / demo / simulate --brain).

Every expectation is computed here from the inputs (the NIfTI arrays read with nibabel, the
matrices written by the test or read with numpy), never from the builder's intermediates:

* neurons per unit proportional to grey-matter volume (largest remainder, exact total),
  E/I 80:20 per unit, layered cortical columns;
* long-range synapses of an instantiated Engine: source regions follow the target's
  connectome row (chi-square / G-test), delays follow tract length / velocity, local delays;
* labels matched explicitly (permuted CSVs, TVB zips by name);
* PET in-degree and conductance scaling; voxel-level units;
* bad inputs and bad options fail with InputError / ConfigError and leave no output file;
* the brain file round trip, and the CLI (dtb build, dtb simulate --brain, dtb demo).
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy import stats

import dtb
from dtb.brain.build import BuildOptions, build, largest_remainder
from dtb.brain.spec import BrainSpec
from dtb.cli.main import main
from dtb.data import demo_inputs
from dtb.errors import ConfigError, InputError, OutputError

DT = 0.1
ALPHA = 1e-3
DEFAULT = Path(demo_inputs()["atlas"]).parent

# --------------------------------------------------------------------------- a tiny subject
# Five regions with non-contiguous labels, on a 2 x 2 x 2.5 mm grid (10 mm^3 voxels).
LABELS = np.array([3, 7, 11, 12, 20])
NAMES = ["ctx-a", "ctx-b", "ctx-c", "sub-d", "sub-e"]
CORTICAL = np.array([True, True, True, False, False])
SHAPE = (8, 6, 5)
AFFINE = np.array([[2.0, 0, 0, -8.0], [0, 2.0, 0, -6.0], [0, 0, 2.5, -5.0], [0, 0, 0, 1]])
VOXEL_MM3 = 10.0
# structural connectivity, row = target region, in LABELS order: a large diagonal (which
# the builder must drop), some absent connections, and asymmetric entries (so that rows and
# columns cannot be confused); tract lengths asymmetric in two places for the same reason
SC = np.array([[900.0, 120, 0, 30, 5],
               [15, 900, 60, 0, 40],
               [0, 60, 900, 80, 90],
               [150, 0, 80, 900, 200],
               [5, 4, 10, 200, 900]])
LENGTHS = np.array([[0.0, 23.7, 51.2, 38.9, 71.3],
                    [26.1, 0, 30.4, 64.1, 45.6],
                    [51.2, 30.4, 0, 27.8, 88.2],
                    [41.3, 64.1, 27.8, 0, 19.3],
                    [71.3, 45.6, 88.2, 19.3, 0]])
PET = np.array([2.0, 1.0, 1.5, 0.5, 3.0])


def atlas_arrays() -> tuple[np.ndarray, np.ndarray]:
    lab = np.zeros(SHAPE, np.int16)
    lab[0:3] = 3
    lab[3:5] = 7
    lab[5:7, 0:3] = 11
    lab[5:7, 3:6] = 12
    lab[7] = 20
    lab[:, :, 4] = 0                       # a background slab ...
    rng = np.random.default_rng(7)
    gm = rng.uniform(0.3, 1.0, SHAPE)
    gm[lab == 20] *= 0.5                   # ... unequal region volumes
    gm[:, :, 4] = 0.0
    gm[2, 1, 4] = 0.6                      # grey matter outside every region (not a unit)
    gm[0, 0, 0] = gm[3, 2, 1] = 0.0        # labelled voxels without grey matter
    return lab, np.round(gm, 3).astype(np.float32)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_matrix(path: Path, labels, m: np.ndarray, fmt: str = "{:g}") -> Path:
    """A CSV with a header row of labels and each row starting with its label."""
    lines = ["label," + ",".join(str(int(x)) for x in labels)]
    for lab, row in zip(labels, m, strict=True):
        lines.append(f"{int(lab)}," + ",".join(fmt.format(v) for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_table(path: Path, rows: list[list], header: list[str], sep: str = "\t") -> Path:
    path.write_text("\n".join(sep.join(str(c) for c in r) for r in [header, *rows]) + "\n")
    return path


def make_subject(d: Path, order=None) -> dict[str, str]:
    """The tiny subject's files; connectome CSVs in `order` (indices into LABELS)."""
    d.mkdir(parents=True, exist_ok=True)
    lab, gm = atlas_arrays()
    o = np.arange(len(LABELS)) if order is None else np.asarray(order)
    # region table: reversed order, and volumes that must NOT be used when an atlas is given
    rows = [[int(LABELS[i]), NAMES[i], int(CORTICAL[i]), 1000.0] for i in range(5)][::-1]
    pet_rows = [[int(LABELS[i]), PET[i]] for i in range(5)][::-1]
    return {
        "atlas": str(save_nifti(d / "atlas.nii.gz", lab)),
        "gm": str(save_nifti(d / "gm.nii.gz", gm)),
        "regions": str(write_table(d / "regions.tsv", rows,
                                   ["label", "name", "cortical", "volume_mm3"])),
        "sc": str(write_matrix(d / "sc.csv", LABELS[o], SC[np.ix_(o, o)])),
        "lengths": str(write_matrix(d / "lengths.csv", LABELS[o], LENGTHS[np.ix_(o, o)])),
        "pet": str(write_table(d / "pet.csv", pet_rows, ["label", "value"], sep=",")),
    }


def connectome_only(files: dict[str, str]) -> dict[str, str]:
    return {k: files[k] for k in ("atlas", "gm", "regions", "sc", "lengths")}


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict[str, str]:
    return make_subject(tmp_path_factory.mktemp("subject"))


# --------------------------------------------------------------------------- helpers

def gm_sums(atlas: str, gm: str) -> dict[int, float]:
    """Grey-matter volume (mm^3) per label, from the images."""
    a, g = nib.load(atlas), nib.load(gm)
    lab = np.asarray(a.dataobj).astype(np.int64)
    val = np.asarray(g.dataobj).astype(np.float64)
    vox = abs(np.linalg.det(a.affine[:3, :3]))
    return {int(x): float(val[lab == x].sum() * vox) for x in np.unique(lab) if x > 0}


def family(spec: BrainSpec, name: str):
    return next(f for f in spec.families if f.name == name)


def sizes(spec: BrainSpec, name: str) -> np.ndarray:
    f = [f for f in spec.families if f.name == name]
    return f[0].sizes if f else np.zeros(spec.n_units, np.int64)


def label_index(spec: BrainSpec) -> np.ndarray:
    """Position in LABELS of each of the spec's regions (by label)."""
    return np.array([int(np.flatnonzero(LABELS == x)[0]) for x in spec.region_labels])


def edges(eng: dtb.Engine, pid: int):
    """(source index in its population, target engine index, delay steps) of projection pid."""
    src, tgt, _, dly = eng.synapses(pid)
    return src, tgt, dly


def long_range(eng: dtb.Engine, spec: BrainSpec):
    """Every long-range synapse: (source label, target label, source unit, delay steps,
    target family, target index in its family)."""
    lay = {x.name: x for x in eng.layout}
    out = {k: [] for k in ("src_lab", "tgt_lab", "src_unit", "dly", "tgt_fam", "tgt")}
    unit_labels = np.asarray(spec.unit_labels)
    for pid, q in enumerate(eng.network.projections):
        if q.rule.kind != "long_range":
            continue
        src, tgt, dly = edges(eng, pid)
        tgt = tgt - lay[q.target].lo
        src_unit = np.repeat(np.arange(spec.n_units), sizes(spec, q.source))[src]
        tgt_unit = np.repeat(np.arange(spec.n_units), sizes(spec, q.target))[tgt]
        out["src_lab"].append(unit_labels[src_unit])
        out["tgt_lab"].append(unit_labels[tgt_unit])
        out["src_unit"].append(src_unit)
        out["dly"].append(dly)
        out["tgt_fam"].append(np.full(len(tgt), q.target))
        out["tgt"].append(tgt)
    return {k: np.concatenate(v) for k, v in out.items()}


def expected_steps(lengths_mm: np.ndarray, velocity: float, dt: float = DT) -> np.ndarray:
    return np.maximum(1, np.floor(lengths_mm / velocity / dt + 0.5)).astype(np.int64)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --------------------------------------------------------------------------- counts

def test_largest_remainder_known_answers():
    np.testing.assert_array_equal(largest_remainder(10, np.array([1.0, 1, 1])), [4, 3, 3])
    np.testing.assert_array_equal(largest_remainder(7, np.array([0.5, 0.25, 0.25])), [3, 2, 2])
    rng = np.random.default_rng(3)
    for _ in range(20):
        w = rng.uniform(0.01, 5.0, rng.integers(1, 40))
        total = int(rng.integers(1, 10_000))
        n = largest_remainder(total, w)
        assert n.sum() == total
        assert np.all(np.abs(n - total * w / w.sum()) < 1)


def _check_proportional(spec: BrainSpec, volume_by_label: dict[int, float], total: int):
    n_u = spec.neurons_per_unit()
    v = np.array([volume_by_label[x] for x in spec.unit_labels])
    assert n_u.sum() == total == spec.n_neurons
    assert np.all(np.abs(n_u - total * v / v.sum()) < 1)
    e, i = sizes(spec, "E"), sizes(spec, "I")
    np.testing.assert_array_equal(e + i, n_u)
    assert np.all(np.abs(e - 0.8 * n_u) <= 0.5 + 1e-9)


def test_neurons_follow_grey_matter_tiny_subject(subject):
    spec = build(**connectome_only(subject), options=BuildOptions(neurons=3001))
    vol = gm_sums(subject["atlas"], subject["gm"])
    assert sorted(spec.region_labels.tolist()) == sorted(LABELS.tolist())
    np.testing.assert_allclose(spec.region_volumes_mm3,
                               [vol[x] for x in spec.region_labels], rtol=1e-6)
    _check_proportional(spec, vol, 3001)
    # names and cortical flags from the region table (given in reverse order), by label
    idx = label_index(spec)
    assert spec.region_names == [NAMES[i] for i in idx]
    np.testing.assert_array_equal(spec.region_cortical, CORTICAL[idx])


def test_neurons_follow_grey_matter_default_subject():
    d = demo_inputs()
    spec = build(atlas=d["atlas"], gm=d["gm"], regions=d["regions"], sc=d["sc"],
                 lengths=d["lengths"], options=BuildOptions(neurons=20_000))
    vol = gm_sums(d["atlas"], d["gm"])
    assert len(spec.region_labels) == len(vol) == 82
    _check_proportional(spec, vol, 20_000)


def test_layered_columns(subject):
    n = 6000
    spec = build(**connectome_only(subject), options=BuildOptions(neurons=n, layers=True))
    vol = gm_sums(subject["atlas"], subject["gm"])
    n_u = spec.neurons_per_unit()
    v = np.array([vol[x] for x in spec.unit_labels])
    assert n_u.sum() == n
    assert np.all(np.abs(n_u - n * v / v.sum()) < 1)
    cort = CORTICAL[label_index(spec)][spec.unit_region]
    assert cort.any() and (~cort).any()
    share = np.array([0.338, 0.349, 0.076, 0.221])
    e_frac = [0.78, 0.80, 0.82, 0.83]
    layer_total = np.zeros(spec.n_units, np.int64)
    for layer, s, f in zip(("L23", "L4", "L5", "L6"), share, e_frac, strict=True):
        e, i = sizes(spec, layer + "E"), sizes(spec, layer + "I")
        t = e + i
        layer_total += t
        assert np.all(t[~cort] == 0), f"{layer} neurons in a subcortical unit"
        # the four published shares sum to 98.4 %; with an exact total per unit they are
        # taken relative to each other
        assert np.all(np.abs(t[cort] - n_u[cort] * s / share.sum()) < 1), layer
        assert np.all(np.abs(e[cort] - f * t[cort]) < 1), layer
        assert family(spec, layer + "E").type == "E" and family(spec, layer + "I").type == "I"
    np.testing.assert_array_equal(layer_total[cort], n_u[cort])
    e, i = sizes(spec, "E"), sizes(spec, "I")
    assert np.all(e[cort] == 0) and np.all(i[cort] == 0)
    np.testing.assert_array_equal((e + i)[~cort], n_u[~cort])
    assert np.all(np.abs(e[~cort] - 0.8 * n_u[~cort]) <= 0.5 + 1e-9)
    # an engine instantiates it, and long-range sources never come from unconnected regions
    eng = dtb.Engine(spec.to_network(), dt=DT)
    lr = long_range(eng, spec)
    ti = np.searchsorted(LABELS, lr["tgt_lab"])
    si = np.searchsorted(LABELS, lr["src_lab"])
    w = SC.copy()
    np.fill_diagonal(w, 0.0)
    assert lr["src_lab"].size > 0
    assert np.all(w[ti, si] > 0)


# --------------------------------------------------------------------------- long range

@pytest.fixture(scope="module")
def tiny_engine(subject):
    spec = build(**connectome_only(subject), options=BuildOptions(neurons=3000))
    return spec, dtb.Engine(spec.to_network(), dt=DT)


def test_adaptation_goes_to_excitatory_cells_only(subject):
    """--adaptation G,TAU: every excitatory neuron gets g_adapt and exp(-dt/tau_adapt) in
    its packed parameters, every inhibitory neuron none; and it slows the E cells."""
    from dtb.kernels import rows

    g, tau = 0.002, 300.0
    spec = build(**connectome_only(subject),
                 options=BuildOptions(neurons=1500, adaptation=(g, tau)))
    plain = build(**connectome_only(subject), options=BuildOptions(neurons=1500))
    assert {f.name: f.params.get("tau_adapt") for f in spec.families} == {"E": tau, "I": None}
    e = next(f for f in spec.families if f.name == "E")
    assert np.all(e.hyper["g_adapt"] == g)  # per unit, so that dtb fit can fit it
    assert all("g_adapt" not in f.hyper for f in spec.families if f.name != "E")
    rates = []
    for sp in (spec, plain):
        eng = dtb.Engine(sp.to_network(), dt=DT, seed=3)
        types = np.array([p.type for p in eng.network.populations])
        is_e = np.concatenate([np.full(p.size, t == "E") for p, t in
                               zip(eng.network.populations, types, strict=True)])
        eng.run(400.0)
        t, gid = eng.spikes()
        rates.append(np.bincount(gid[t > 200.0], minlength=len(is_e))[is_e].mean())
        if sp is spec:
            P = eng.P
            assert np.all(P[rows.L_GA, is_e] == g) and np.all(P[rows.L_GA, ~is_e] == 0.0)
            np.testing.assert_allclose(P[rows.L_DECAYA, is_e], math.exp(-DT / tau))
    assert rates[0] < 0.8 * rates[1]


def test_long_range_sources_follow_sc_rows(tiny_engine):
    spec, eng = tiny_engine
    lr = long_range(eng, spec)
    w = SC.copy()
    np.fill_diagonal(w, 0.0)
    ti = np.searchsorted(LABELS, lr["tgt_lab"])
    si = np.searchsorted(LABELS, lr["src_lab"])
    assert np.array_equal(LABELS[ti], lr["tgt_lab"]) and np.array_equal(LABELS[si], lr["src_lab"])
    for g in range(len(LABELS)):
        sel = ti == g
        obs = np.bincount(si[sel], minlength=len(LABELS))
        exp = w[g] / w[g].sum() * sel.sum()
        nz = exp > 0
        assert sel.sum() > 1000
        assert obs[~nz].sum() == 0, f"sources from unconnected regions for label {LABELS[g]}"
        assert stats.chisquare(obs[nz], exp[nz]).pvalue > ALPHA, LABELS[g]
    # long-range sources are excitatory
    assert {q.source for q in eng.network.projections if q.rule.kind == "long_range"} == {"E"}


def test_long_range_in_degree_and_local_delays(tiny_engine):
    spec, eng = tiny_engine
    lay = {x.name: x for x in eng.layout}
    lr = long_range(eng, spec)
    for fam in ("E", "I"):
        sel = lr["tgt_fam"] == fam
        cnt = np.bincount(lr["tgt"][sel], minlength=lay[fam].size)
        # in-degree 100 split 4:1:2 -> 100 * 2/7 long-range inputs, rounded
        assert np.all(np.abs(cnt - 100 * 2 / 7) < 1)
        total = np.zeros(lay[fam].size, np.int64)
        for pid, q in enumerate(eng.network.projections):
            if q.target == fam:
                total += np.bincount(edges(eng, pid)[1] - lay[fam].lo, minlength=lay[fam].size)
        np.testing.assert_array_equal(total, 100)
    for pid, q in enumerate(eng.network.projections):
        if q.rule.kind == "unit_local":
            np.testing.assert_array_equal(edges(eng, pid)[2], 10)  # 1 ms at 0.1 ms


def test_long_range_delays_follow_lengths(tiny_engine):
    spec, eng = tiny_engine
    lr = long_range(eng, spec)
    ti = np.searchsorted(LABELS, lr["tgt_lab"])
    si = np.searchsorted(LABELS, lr["src_lab"])
    np.testing.assert_array_equal(lr["dly"], expected_steps(LENGTHS, 3.0)[ti, si])


@pytest.mark.parametrize("velocity,local_delay", [(1.5, 0.7), (500.0, 2.3)])
def test_delays_scale_with_velocity(subject, tiny_engine, velocity, local_delay):
    spec3, eng3 = tiny_engine
    spec = build(**connectome_only(subject),
                 options=BuildOptions(neurons=3000, velocity=velocity, local_delay=local_delay))
    idx = label_index(spec)
    np.testing.assert_allclose(spec.conduction_ms, LENGTHS[np.ix_(idx, idx)] / velocity)
    eng = dtb.Engine(spec.to_network(), dt=DT)
    lr = long_range(eng, spec)
    ti = np.searchsorted(LABELS, lr["tgt_lab"])
    si = np.searchsorted(LABELS, lr["src_lab"])
    np.testing.assert_array_equal(lr["dly"], expected_steps(LENGTHS, velocity)[ti, si])
    if velocity == 1.5:  # twice slower than the default 3 mm/ms: twice the delay (+-1 step)
        lr3 = long_range(eng3, spec3)
        assert np.array_equal(lr3["src_lab"], lr["src_lab"])  # same draws, other delays
        assert np.all(np.abs(lr["dly"] - 2 * lr3["dly"]) <= 1)
    else:  # fast conduction: delays below half a step are clamped to one step
        assert lr["dly"].min() == 1 and lr["dly"].max() == 2
    for pid, q in enumerate(eng.network.projections):
        if q.rule.kind == "unit_local":
            np.testing.assert_array_equal(edges(eng, pid)[2], int(np.floor(local_delay / DT
                                                                           + 0.5)))


def test_default_subject_long_range_follows_sc():
    """Region level, 5000 neurons: a G-test pooled over every target row (cells expecting
    fewer than 5 synapses merged), and no synapse from an unconnected region."""
    d = demo_inputs()
    spec = build(atlas=d["atlas"], gm=d["gm"], regions=d["regions"], sc=d["sc"],
                 lengths=d["lengths"], options=BuildOptions(neurons=5000))
    eng = dtb.Engine(spec.to_network(), dt=DT)
    raw = np.loadtxt(d["sc"], delimiter=",", skiprows=1)
    labels, w = raw[:, 0].astype(int), raw[:, 1:]
    np.fill_diagonal(w, 0.0)
    lengths = np.loadtxt(d["lengths"], delimiter=",", skiprows=1)[:, 1:]
    lr = long_range(eng, spec)
    ti = np.searchsorted(labels, lr["tgt_lab"])
    si = np.searchsorted(labels, lr["src_lab"])
    assert np.array_equal(labels[ti], lr["tgt_lab"])
    assert np.all(w[ti, si] > 0)
    g_stat, df = 0.0, 0
    for g in range(len(labels)):
        sel = ti == g
        obs = np.bincount(si[sel], minlength=len(labels)).astype(float)
        exp = w[g] / w[g].sum() * sel.sum()
        big = exp >= 5
        o = np.append(obs[big], obs[~big].sum())
        e = np.append(exp[big], exp[~big].sum())
        keep = e > 0
        o, e = o[keep], e[keep]
        g_stat += 2 * np.sum(np.where(o > 0, o * np.log(np.where(o > 0, o, 1) / e), 0.0))
        df += len(o) - 1
    assert df > 500
    assert stats.chi2.sf(g_stat, df) > ALPHA
    np.testing.assert_array_equal(lr["dly"], expected_steps(lengths, 3.0)[ti, si])


# --------------------------------------------------------------------------- label matching

def test_connectome_in_another_order_lines_up(tmp_path, subject):
    canon = build(**connectome_only(subject), options=BuildOptions(neurons=2000))
    files = make_subject(tmp_path / "perm", order=[3, 0, 4, 1, 2])
    # lengths in yet another order
    o = np.array([2, 4, 0, 3, 1])
    write_matrix(Path(files["lengths"]), LABELS[o], LENGTHS[np.ix_(o, o)])
    spec = build(**connectome_only(files), options=BuildOptions(neurons=2000))
    idx = label_index(spec)
    w = SC[np.ix_(idx, idx)].copy()
    np.fill_diagonal(w, 0.0)
    np.testing.assert_array_equal(spec.weights, w)
    np.testing.assert_array_equal(spec.lengths_mm, LENGTHS[np.ix_(idx, idx)])
    np.testing.assert_array_equal(spec.weights, canon.weights)
    np.testing.assert_array_equal(spec.region_labels, canon.region_labels)
    for a, b in zip(spec.rules, canon.rules, strict=True):
        np.testing.assert_array_equal(a.k, b.k)


def _write_tvb(path: Path, order, weights, lengths, names, centres) -> Path:
    o = np.asarray(order)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights.txt", "\n".join(" ".join(f"{v:g}" for v in r)
                                            for r in weights[np.ix_(o, o)]) + "\n")
        z.writestr("tract_lengths.txt", "\n".join(" ".join(f"{v:g}" for v in r)
                                                  for r in lengths[np.ix_(o, o)]) + "\n")
        z.writestr("centres.txt", "\n".join(f"{names[i]} {c[0]:g} {c[1]:g} {c[2]:g}"
                                            for i, c in zip(o, centres[o], strict=True)) + "\n")
    return path


def test_tvb_zip_by_name_in_another_order(tmp_path, subject):
    centres = np.arange(15, dtype=float).reshape(5, 3)
    z = _write_tvb(tmp_path / "conn.zip", [4, 2, 0, 3, 1], SC, LENGTHS, NAMES, centres)
    spec = build(atlas=subject["atlas"], gm=subject["gm"], regions=subject["regions"],
                 tvb=str(z), options=BuildOptions(neurons=2000))
    idx = label_index(spec)
    w = SC[np.ix_(idx, idx)].copy()
    np.fill_diagonal(w, 0.0)
    np.testing.assert_array_equal(spec.weights, w)
    np.testing.assert_array_equal(spec.lengths_mm, LENGTHS[np.ix_(idx, idx)])


def test_default_subject_tvb_zip_equals_csvs():
    d = demo_inputs()
    common = {"atlas": d["atlas"], "gm": d["gm"], "regions": d["regions"],
              "options": BuildOptions(neurons=5000)}
    a = build(**common, sc=d["sc"], lengths=d["lengths"])
    b = build(**common, tvb=str(DEFAULT / "default_subject_tvb.zip"))
    raw = np.loadtxt(d["sc"], delimiter=",", skiprows=1)
    assert raw[:, 0].astype(int).tolist() == a.region_labels.tolist()
    w = raw[:, 1:].copy()
    np.fill_diagonal(w, 0.0)
    np.testing.assert_array_equal(a.weights, w)
    np.testing.assert_array_equal(b.weights, a.weights)
    np.testing.assert_allclose(b.lengths_mm, a.lengths_mm, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(b.region_labels, a.region_labels)
    for x, y in zip(a.families, b.families, strict=True):
        np.testing.assert_array_equal(x.sizes, y.sizes)


# --------------------------------------------------------------------------- PET

def test_pet_scales_in_degree(subject):
    spec = build(**subject, options=BuildOptions(neurons=3000, pet_mode="indegree"))
    plain = build(**connectome_only(subject), options=BuildOptions(neurons=3000))
    per_unit = PET[label_index(spec)][spec.unit_region]
    rel = per_unit / np.average(per_unit, weights=spec.neurons_per_unit())
    np.testing.assert_allclose(spec.pet, PET[label_index(spec)])
    assert spec.pet_mode == "indegree"
    exact = {"unit_local E": 100 * 4 / 7, "unit_local I": 100 / 7, "long_range E": 100 * 2 / 7}
    for r, r0 in zip(spec.rules, plain.rules, strict=True):
        assert (r.source, r.target, r.kind) == (r0.source, r0.target, r0.kind)
        assert np.all(np.abs(r.k - exact[f"{r.kind} {r.source}"] * rel) < 1)
        assert np.all(np.abs(r.k - r0.k * rel) <= 0.5 + 1e-9)
    for f, f0 in zip(spec.families, plain.families, strict=True):
        np.testing.assert_array_equal(f.sizes, f0.sizes)
        for k in f.hyper:
            np.testing.assert_array_equal(f.hyper[k], f0.hyper[k])
    # on an engine: every neuron's number of incoming synapses
    eng = dtb.Engine(spec.to_network(), dt=DT)
    lay = {x.name: x for x in eng.layout}
    for fam in ("E", "I"):
        n = lay[fam].size
        total = np.zeros(n, np.int64)
        for pid, q in enumerate(eng.network.projections):
            if q.target == fam:
                total += np.bincount(edges(eng, pid)[1] - lay[fam].lo, minlength=n)
        rel_n = np.repeat(rel, sizes(spec, fam))
        assert np.all(np.abs(total - 100 * rel_n) < 2)
        ks = sum(r.k for r in spec.rules if r.target == fam)
        np.testing.assert_array_equal(total, np.repeat(ks, sizes(spec, fam)))
    # the mean in-degree stays the K asked for (up to per-unit rounding)
    assert abs(eng.n_synapses / eng.n_neurons - 100) < 1


def test_pet_scales_conductances(subject):
    spec = build(**subject, options=BuildOptions(neurons=3000, pet_mode="conductance"))
    plain = build(**connectome_only(subject), options=BuildOptions(neurons=3000))
    per_unit = PET[label_index(spec)][spec.unit_region]
    rel = per_unit / np.average(per_unit, weights=spec.neurons_per_unit())
    assert spec.pet_mode == "conductance"
    for r, r0 in zip(spec.rules, plain.rules, strict=True):
        np.testing.assert_array_equal(r.k, r0.k)
    net = spec.to_network()
    for f, f0 in zip(spec.families, plain.families, strict=True):
        assert set(f.hyper) >= {"g_AMPA", "g_NMDA", "g_GABA_A", "g_GABA_B"}
        for k in f.hyper:
            want = f0.hyper[k] * rel if k.startswith("g_") else f0.hyper[k]
            np.testing.assert_allclose(f.hyper[k], want, rtol=1e-12)
            np.testing.assert_allclose(net.population(f.name).params[k].values, want,
                                       rtol=1e-12)


# --------------------------------------------------------------------------- voxel level

@pytest.fixture(scope="module")
def voxel_spec(subject):
    return build(**connectome_only(subject),
                 options=BuildOptions(level="voxel", neurons=2500))


def _my_voxels():
    lab, gm = atlas_arrays()
    sel = (lab > 0) & (gm > 0) & np.isin(lab, LABELS)
    ijk = np.argwhere(sel)
    return {tuple(v): (int(lab[tuple(v)]), float(gm[tuple(v)])) for v in ijk}


def test_voxel_units(voxel_spec):
    spec = voxel_spec
    mine = _my_voxels()
    assert spec.level == "voxel"
    assert spec.n_units == len(mine)
    assert np.all(np.diff(spec.unit_region) >= 0)
    # every region's voxels are contiguous and the region order is the spec's
    assert len(np.unique(spec.unit_region)) == len(LABELS)
    inv = np.linalg.inv(AFFINE)
    xyz1 = np.c_[spec.unit_coords_mm, np.ones(spec.n_units)]
    ijk = np.rint((xyz1 @ inv.T)[:, :3]).astype(int)
    np.testing.assert_allclose((np.c_[ijk, np.ones(len(ijk))] @ AFFINE.T)[:, :3],
                               spec.unit_coords_mm, atol=1e-4)
    keys = [tuple(v) for v in ijk]
    assert len(set(keys)) == len(keys) and set(keys) == set(mine)
    np.testing.assert_array_equal(spec.unit_labels, [mine[k][0] for k in keys])
    gm = np.array([mine[k][1] for k in keys])
    np.testing.assert_allclose(spec.unit_volumes_mm3, gm * VOXEL_MM3, rtol=1e-6)
    n_u = spec.neurons_per_unit()
    assert n_u.sum() == 2500
    assert np.all(np.abs(n_u - 2500 * gm / gm.sum()) < 1)
    e = sizes(spec, "E")
    assert np.all(np.abs(e - 0.8 * n_u) <= 0.5 + 1e-9)


def test_voxel_long_range_sources_spread_by_neurons(voxel_spec):
    spec = voxel_spec
    eng = dtb.Engine(spec.to_network(), dt=DT)
    lr = long_range(eng, spec)
    e_sizes = sizes(spec, "E")
    unit_labels = np.asarray(spec.unit_labels)
    w = SC.copy()
    np.fill_diagonal(w, 0.0)
    ti = np.searchsorted(LABELS, lr["tgt_lab"])
    si = np.searchsorted(LABELS, lr["src_lab"])
    for g in range(len(LABELS)):  # regions still follow the SC rows
        sel = ti == g
        obs = np.bincount(si[sel], minlength=len(LABELS))
        exp = w[g] / w[g].sum() * sel.sum()
        nz = exp > 0
        assert obs[~nz].sum() == 0
        assert stats.chisquare(obs[nz], exp[nz]).pvalue > ALPHA
    for lab in LABELS:  # within a source region, voxels in proportion to their E neurons
        units = np.flatnonzero(unit_labels == lab)
        sel = lr["src_lab"] == lab
        obs = np.bincount(lr["src_unit"][sel], minlength=spec.n_units)[units]
        exp = e_sizes[units] / e_sizes[units].sum() * sel.sum()
        assert stats.chisquare(obs, exp).pvalue > ALPHA, lab
    np.testing.assert_array_equal(lr["dly"], expected_steps(LENGTHS, 3.0)[ti, si])


def test_default_subject_voxel_units():
    d = demo_inputs()
    spec = build(atlas=d["atlas"], gm=d["gm"], regions=d["regions"], sc=d["sc"],
                 lengths=d["lengths"], options=BuildOptions(level="voxel", neurons=120_000))
    lab = np.asarray(nib.load(d["atlas"]).dataobj).astype(np.int64)
    gm = np.asarray(nib.load(d["gm"]).dataobj).astype(np.float64)
    sel = (lab > 0) & (gm > 0)
    assert spec.n_units == int(sel.sum())
    assert np.all(np.diff(spec.unit_region) >= 0)
    np.testing.assert_array_equal(np.bincount(spec.unit_labels, minlength=lab.max() + 1),
                                  np.bincount(lab[sel], minlength=lab.max() + 1))
    np.testing.assert_allclose(np.sort(spec.unit_volumes_mm3), np.sort(gm[sel] * 64.0),
                               rtol=1e-6)
    n_u = spec.neurons_per_unit()
    v = spec.unit_volumes_mm3
    assert n_u.sum() == 120_000 and np.all(np.abs(n_u - 120_000 * v / v.sum()) < 1)


# --------------------------------------------------------------------------- bad inputs

def _bad_case(name: str, d: Path) -> tuple[dict[str, str], list[str]]:
    """Input files with one problem, and fragments the error message must contain."""
    f = make_subject(d)
    lab, gm = atlas_arrays()
    if name == "sc_nan":
        m = SC.copy()
        m[1, 2] = m[2, 1] = np.nan
        write_matrix(Path(f["sc"]), LABELS, m)
        return f, ["sc.csv", "nan"]
    if name == "sc_negative":
        m = SC.copy()
        m[1, 2] = m[2, 1] = -5
        write_matrix(Path(f["sc"]), LABELS, m)
        return f, ["sc.csv", "-5"]
    if name == "lengths_nan":
        m = LENGTHS.copy()
        m[0, 4] = m[4, 0] = np.nan
        write_matrix(Path(f["lengths"]), LABELS, m)
        return f, ["lengths.csv", "nan"]
    if name == "lengths_negative":
        m = LENGTHS.copy()
        m[0, 4] = m[4, 0] = -3.5
        write_matrix(Path(f["lengths"]), LABELS, m)
        return f, ["lengths.csv", "-3.5"]
    if name == "sc_not_square":
        np.save(d / "sc.npy", SC[:, :4])
        (d / "labels.txt").write_text("\n".join(str(x) for x in LABELS) + "\n")
        np.save(d / "lengths.npy", LENGTHS)
        f.update(sc=str(d / "sc.npy"), lengths=str(d / "lengths.npy"),
                 labels=str(d / "labels.txt"))
        return f, ["sc.npy", "square"]
    if name == "sc_ragged":
        text = Path(f["sc"]).read_text().splitlines()
        text[3] = text[3].rsplit(",", 1)[0]
        Path(f["sc"]).write_text("\n".join(text) + "\n")
        return f, ["sc.csv", "line 4"]
    if name == "matrices_mismatched":
        write_matrix(Path(f["lengths"]), LABELS[:4], LENGTHS[:4, :4])
        return f, ["lengths.csv"]
    if name == "grid_shape":
        save_nifti(Path(f["gm"]), gm[:, :, :4].copy())
        return f, ["gm.nii.gz", "shape"]
    if name == "grid_affine":
        aff = AFFINE.copy()
        aff[0, 3] += 2.0
        save_nifti(Path(f["gm"]), gm, aff)
        return f, ["gm.nii.gz", "affine"]
    if name == "atlas_label_missing_from_sc":
        keep = [0, 1, 2, 3]
        write_matrix(Path(f["sc"]), LABELS[keep], SC[np.ix_(keep, keep)])
        write_matrix(Path(f["lengths"]), LABELS[keep], LENGTHS[np.ix_(keep, keep)])
        return f, ["sc.csv", "20", "missing"]
    if name == "sc_label_missing_from_atlas":
        labels = np.append(LABELS, 99)
        m = np.pad(SC, ((0, 1), (0, 1)))
        m[5, 0] = m[0, 5] = 10
        length = np.pad(LENGTHS, ((0, 1), (0, 1)), constant_values=40.0)
        write_matrix(Path(f["sc"]), labels, m)
        write_matrix(Path(f["lengths"]), labels, length)
        return f, ["sc.csv", "99", "missing"]
    if name == "region_table_missing_label":
        rows = [[int(LABELS[i]), NAMES[i], int(CORTICAL[i]), 1000.0] for i in range(4)]
        write_table(Path(f["regions"]), rows, ["label", "name", "cortical", "volume_mm3"])
        return f, ["regions.tsv", "20"]
    if name == "empty_region":
        g = gm.copy()
        g[lab == 11] = 0.0
        save_nifti(Path(f["gm"]), g)
        return f, ["gm.nii.gz", "label 11"]
    if name == "empty_region_table":
        rows = [[int(LABELS[i]), NAMES[i], int(CORTICAL[i]), 0.0 if i == 2 else 1000.0]
                for i in range(5)]
        write_table(Path(f["regions"]), rows, ["label", "name", "cortical", "volume_mm3"])
        del f["atlas"], f["gm"]
        return f, ["regions.tsv", "volume"]
    if name == "no_inputs":
        m = SC.copy()
        m[3, :] = m[:, 3] = 0.0
        m[3, 3] = 900
        write_matrix(Path(f["sc"]), LABELS, m)
        return f, ["12", "all zero"]
    if name == "missing_file":
        f["atlas"] = str(d / "no_such_atlas.nii.gz")
        return f, ["no_such_atlas.nii.gz"]
    if name == "directory":
        (d / "adir").mkdir()
        f["sc"] = str(d / "adir")
        return f, ["adir"]
    if name == "truncated_atlas":
        p = Path(f["atlas"])
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
        return f, ["atlas.nii.gz"]
    if name == "truncated_gm":
        p = Path(f["gm"])
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
        return f, ["gm.nii.gz"]
    if name == "truncated_sc":
        p = Path(f["sc"])
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) * 2 // 3])
        return f, ["sc.csv"]
    if name == "binary_sc":
        Path(f["sc"]).write_bytes(bytes(range(256)) * 4)
        return f, ["sc.csv"]
    if name == "truncated_tvb":
        z = _write_tvb(d / "conn.zip", range(5), SC, LENGTHS, NAMES, np.zeros((5, 3)))
        z.write_bytes(z.read_bytes()[:150])
        del f["sc"], f["lengths"]
        f["tvb"] = str(z)
        return f, ["conn.zip"]
    if name == "pet_zero":
        write_table(Path(f["pet"]), [[int(x), 0.0 if x == 7 else 1.0] for x in LABELS],
                    ["label", "value"], sep=",")
        return f, ["pet.csv"]
    if name == "pet_missing_label":
        write_table(Path(f["pet"]), [[int(x), 1.0] for x in LABELS[:4]], ["label", "value"],
                    sep=",")
        return f, ["pet.csv", "20"]
    raise AssertionError(name)


BAD = ["sc_nan", "sc_negative", "lengths_nan", "lengths_negative", "sc_not_square",
       "sc_ragged", "matrices_mismatched", "grid_shape", "grid_affine",
       "atlas_label_missing_from_sc", "sc_label_missing_from_atlas",
       "region_table_missing_label", "empty_region", "empty_region_table", "no_inputs",
       "missing_file", "directory", "truncated_atlas", "truncated_gm", "truncated_sc",
       "binary_sc", "truncated_tvb", "pet_zero", "pet_missing_label"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_named_and_leaves_no_file(case, tmp_path, capsys):
    f, fragments = _bad_case(case, tmp_path / "in")
    with pytest.raises(InputError) as e:
        build(**f, options=BuildOptions(neurons=2000))
    msg = str(e.value)
    for part in fragments:
        assert part in msg, f"{part!r} not in {msg!r}"
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "brain.h5"
    args = ["build", *[x for k, v in f.items() for x in (f"--{k}", v)], "--neurons", "2000",
            "-o", str(out)]
    rc, _, err = run_cli(args, capsys)
    assert rc == 2
    assert "dtb: error:" in err and fragments[0] in err
    assert not out.exists()
    assert list(outdir.iterdir()) == []


BAD_OPTIONS = [
    (BuildOptions(neurons=-5), "neurons"),
    (BuildOptions(neurons=0), "neurons"),
    (BuildOptions(split=(4.0, 1.0)), "split"),
    (BuildOptions(level="cortex"), "level"),
    (BuildOptions(velocity=0.0), "velocity"),
    (BuildOptions(velocity=-2.0), "velocity"),
    (BuildOptions(adaptation=(-0.001, 500.0)), "adaptation"),
    (BuildOptions(adaptation=(0.001, 0.0)), "adaptation"),
]


@pytest.mark.parametrize("opt,field", BAD_OPTIONS)
def test_bad_options_fail_before_reading_files(opt, field, tmp_path):
    missing = {k: str(tmp_path / f"missing_{k}") for k in ("atlas", "gm", "sc", "lengths")}
    with pytest.raises(ConfigError) as e:
        build(**missing, options=opt)
    assert field in str(e.value)


@pytest.mark.parametrize("args,field", [
    (["--neurons", "-5"], "neurons"), (["--split", "4:1"], "split"),
    (["--velocity", "0"], "velocity"), (["--velocity", "-1"], "velocity"),
    (["--adaptation", "0.001"], "adaptation"), (["--adaptation", "0.001,-5"], "adaptation"),
])
def test_cli_bad_options_fail_before_reading_files(args, field, tmp_path, capsys):
    out = tmp_path / "brain.h5"
    rc, _, err = run_cli(["build", "--atlas", str(tmp_path / "nope.nii.gz"), "--sc",
                          str(tmp_path / "nope.csv"), "--lengths", str(tmp_path / "nope2.csv"),
                          *args, "-o", str(out)], capsys)
    assert rc == 2 and field in err and "nope" not in err
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        main(["build", "--demo", "--level", "cortex", "-o", str(out)])
    assert e.value.code == 2 and not out.exists()


# --------------------------------------------------------------------------- brain file

def _assert_same_spec(a: BrainSpec, b: BrainSpec):
    for name in ("region_labels", "region_volumes_mm3", "region_cortical", "unit_region",
                 "unit_volumes_mm3", "weights", "lengths_mm", "conduction_ms",
                 "region_centres_mm"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    # coordinates are stored as float32
    np.testing.assert_array_equal(b.unit_coords_mm, a.unit_coords_mm.astype(np.float32))
    assert b.region_names == a.region_names
    assert (b.level, b.options, b.provenance, b.pet_mode, b.created) == \
        (a.level, a.options, a.provenance, a.pet_mode, a.created)
    assert b.dtb_version == dtb.__version__
    if a.pet is None:
        assert b.pet is None
    else:
        np.testing.assert_array_equal(b.pet, a.pet)
    assert [f.name for f in b.families] == [f.name for f in a.families]
    for fa, fb in zip(a.families, b.families, strict=True):
        assert (fa.type, fa.model, fa.layer, fa.params, fa.inputs) == \
            (fb.type, fb.model, fb.layer, fb.params, fb.inputs)
        np.testing.assert_array_equal(fb.sizes, fa.sizes)
        assert set(fa.hyper) == set(fb.hyper)
        for k in fa.hyper:
            np.testing.assert_array_equal(fb.hyper[k], fa.hyper[k])
    assert len(a.rules) == len(b.rules)
    for ra, rb in zip(a.rules, b.rules, strict=True):
        assert (ra.source, ra.target, ra.kind, ra.weight, ra.delay, ra.receptor) == \
            (rb.source, rb.target, rb.kind, rb.weight, rb.delay, rb.receptor)
        np.testing.assert_array_equal(rb.k, ra.k)
    na, nb = a.to_network(), b.to_network()
    assert na.populations == nb.populations
    for qa, qb in zip(na.projections, nb.projections, strict=True):
        assert (qa.source, qa.target, qa.weight, qa.delay, qa.receptor, qa.rule.kind) == \
            (qb.source, qb.target, qb.weight, qb.delay, qb.receptor, qb.rule.kind)
        assert qa.rule.k == qb.rule.k
        if qa.rule.kind == "long_range":
            np.testing.assert_array_equal(qa.rule.probs, qb.rule.probs)
            np.testing.assert_array_equal(qa.rule.conduction_ms, qb.rule.conduction_ms)


@pytest.mark.parametrize("opts", [
    {"neurons": 3000},
    {"neurons": 4000, "layers": True, "pet_mode": "conductance"},
    {"neurons": 2500, "level": "voxel"},
], ids=["ei", "layers_pet", "voxel"])
def test_save_load_round_trip(subject, tmp_path, opts):
    files = subject if "pet_mode" in opts else connectome_only(subject)
    spec = build(**files, options=BuildOptions(**opts))
    p = tmp_path / "brain.h5"
    spec.save(p)
    assert [x.name for x in tmp_path.iterdir()] == ["brain.h5"]
    back = BrainSpec.load(p)
    _assert_same_spec(spec, back)
    # provenance: every input file with its sha256
    shas = {d["sha256"] for d in back.provenance}
    for path in files.values():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() in shas, path


def test_load_rejects_foreign_and_damaged_files(subject, tmp_path):
    spec = build(**connectome_only(subject), options=BuildOptions(neurons=2000))
    good = tmp_path / "brain.h5"
    spec.save(good)
    raw = good.read_bytes()
    cases = {}
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h:
        h["x"] = np.arange(3)
    cases["foreign"] = (foreign, "format")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    cases["text"] = (text, "text.h5")
    for frac in (2, 10):
        t = tmp_path / f"trunc{frac}.h5"
        t.write_bytes(raw[: len(raw) // frac])
        cases[f"truncated/{frac}"] = (t, t.name)
    partial = tmp_path / "partial.h5"
    partial.write_bytes(raw)
    with h5py.File(partial, "a") as h:
        del h["connectome/lengths_mm"]
    cases["missing dataset"] = (partial, "partial.h5")
    version = tmp_path / "version.h5"
    version.write_bytes(raw)
    with h5py.File(version, "a") as h:
        h.attrs["format_version"] = 99
    cases["version"] = (version, "format_version")
    cases["missing"] = (tmp_path / "nothing.h5", "nothing.h5")
    for what, (path, fragment) in cases.items():
        with pytest.raises(InputError) as e:
            BrainSpec.load(path)
        assert fragment in str(e.value), what
    # simulate --brain on a damaged file: exit 2, no run directory
    run = tmp_path / "run"
    assert main(["simulate", "--brain", str(tmp_path / "trunc2.h5"), "--t", "5", "--out",
                 str(run), "--quiet"]) == 2
    assert not run.exists()


def test_save_is_atomic(subject, tmp_path):
    spec = build(**connectome_only(subject), options=BuildOptions(neurons=2000))
    spec.options = {**spec.options, "unserialisable": object()}
    p = tmp_path / "brain.h5"
    with pytest.raises(TypeError):
        spec.save(p)
    assert list(tmp_path.iterdir()) == []
    # a failing save over an existing file leaves that file as it was
    p.write_bytes(b"old contents")
    with pytest.raises(TypeError):
        spec.save(p)
    assert p.read_bytes() == b"old contents"
    assert [x.name for x in tmp_path.iterdir()] == ["brain.h5"]
    with pytest.raises(OutputError):
        spec.save(tmp_path / "no_such_dir" / "brain.h5")


# --------------------------------------------------------------------------- CLI

def test_cli_build_then_simulate(tmp_path, capsys):
    out = tmp_path / "brain.h5"
    rc, stdout, _ = run_cli(["build", "--demo", "--neurons", "5000", "-o", str(out)], capsys)
    assert rc == 0 and out.is_file()
    assert "dtb build" in stdout and str(out) in stdout
    assert "82 regions" in stdout and "5,000 neurons" in stdout
    spec = BrainSpec.load(out)
    assert spec.n_neurons == 5000 and spec.level == "region"
    assert spec.pet is not None and spec.pet_mode == "indegree"
    # an existing file is not replaced without --overwrite
    before = out.read_bytes()
    rc, _, err = run_cli(["build", "--demo", "--neurons", "6000", "-o", str(out)], capsys)
    assert rc != 0 and "exists" in err and out.read_bytes() == before
    run = tmp_path / "run"
    rc, stdout, _ = run_cli(["simulate", "--brain", str(out), "--t", "50", "--out", str(run)],
                            capsys)
    assert rc == 0
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["source"]["kind"] == "brain" and m["source"]["level"] == "region"
    assert m["source"]["units"] == 82
    assert m["source"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert m["counts"]["neurons"] == 5000
    assert m["timings"]["model_time_ms"] == pytest.approx(50.0)
    assert (run / "spikes.h5").is_file()


def test_cli_demo(tmp_path, capsys):
    run = tmp_path / "demo"
    rc, stdout, _ = run_cli(["demo", "--out", str(run), "--t", "100", "--neurons", "4000"],
                            capsys)
    assert rc == 0
    for name in ("brain.h5", "spikes.h5", "manifest.json", "report/index.md",
                 "report/raster.png", "report/rates.png"):
        assert (run / name).is_file(), name
    assert "report/index.md" in stdout
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete" and m["source"]["kind"] == "brain"
    spec = BrainSpec.load(run / "brain.h5")
    assert spec.n_neurons == 4000 == m["counts"]["neurons"]
    fams = {f.name: int(f.sizes.sum()) for f in spec.families}
    assert set(m["rates_hz"]) == set(fams)
    with h5py.File(run / "spikes.h5", "r") as h:
        for name, n in fams.items():
            t = h[f"spikes/{name}/timestamps"][()]
            rate = len(t) / (n * 0.1)
            assert 0 < rate < 50, (name, rate)
            assert rate == pytest.approx(m["rates_hz"][name])
            assert t.max() <= 100.0
