"""Spatial maps for ``dtb fit`` (issue 13): regional parameters written as a coefficient of
a map from a region table (or the built-in SC strength), so that 80-200 regions are not
80-200 free numbers.  Checked against values computed here by hand: the table read and
put in the brain's region order, standardised, given to every unit of its region, and the
shifted hyperparameter equal to nominal + x * map."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dtb.assimilation.fit import FitParameter, _nominal
from dtb.assimilation.fit_inputs import load_inputs, with_maps
from dtb.assimilation.fit_options import check_args, parse_param
from dtb.brain.maps import read_region_maps, sc_strength_map
from dtb.brain.spec import BrainSpec
from dtb.cli.main import main
from dtb.cli.parser import _parser
from dtb.errors import ConfigError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labelled_brain import build_labelled_brain  # noqa: E402

R = 5


def _csv(path: Path, head: list[str], rows: list[list[object]]) -> Path:
    path.write_text(",".join(head) + "\n" + "\n".join(",".join(map(str, r)) for r in rows)
                    + "\n")
    return path


@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> tuple[Path, BrainSpec]:
    d = tmp_path_factory.mktemp("maps")
    spec = BrainSpec.load(build_labelled_brain(d, R, 100, seed=3,
                                               labels=[10 * (i + 1) for i in range(R)]))
    x = np.random.default_rng(3).normal(size=(120, R))
    _csv(d / "bold.csv", [str(n) for n in spec.region_names], x.tolist())
    return d, spec


def _z(v) -> np.ndarray:
    v = np.asarray(v, float)
    return (v - v.mean()) / v.std()


def test_a_map_table_is_put_in_the_brains_order_and_standardised(brain, tmp_path):
    _, spec = brain
    labels = [int(x) for x in spec.region_labels]
    raw = {lab: 3.0 * k + k * k for k, lab in enumerate(labels)}        # any varying values
    rows = [[lab, raw[lab], 1.0 + (lab == labels[0])] for lab in reversed(labels)]
    t = read_region_maps(_csv(tmp_path / "maps.csv", ["label", "T1T2", "other"], rows))
    got = t.for_brain("t1t2", spec.region_labels, spec.region_names)    # header any case
    np.testing.assert_allclose(got, _z([raw[lab] for lab in labels]))
    assert abs(got.mean()) < 1e-12 and abs(got.std() - 1) < 1e-12
    # by name, rows in another order, with an extra region the brain does not have
    names = [str(n) for n in spec.region_names]
    rows = [[names[k], float(k) ** 2] for k in (3, 0, 4, 2, 1)] + [["Elsewhere", 9.0]]
    t = read_region_maps(_csv(tmp_path / "named.tsv", ["name", "grad"], rows))
    np.testing.assert_allclose(t.for_brain("grad", spec.region_labels, names),
                               _z(np.arange(R, dtype=float) ** 2))


def test_sc_strength_is_the_standardised_log_in_strength(brain):
    _, spec = brain
    w = np.asarray(spec.weights, float)
    np.testing.assert_allclose(sc_strength_map(w), _z(np.log(w.sum(axis=1))))


def test_a_shift_follows_its_map_in_every_unit_of_the_region(brain):
    _, spec = brain
    p = FitParameter("E.I_e", -0.1, 0.1, mode="shift", map_name="sc_strength")
    (q,) = with_maps([p], spec, None)
    per_region = sc_strength_map(spec.weights)
    assert q.map is not None and q.map.shape == (len(spec.unit_region),)
    np.testing.assert_allclose(q.map, per_region[np.asarray(spec.unit_region)])
    nominal = _nominal(spec, "E.I_e")
    np.testing.assert_allclose(q.unit_values(0.05, nominal), nominal + 0.05 * q.map)
    # a parameter without a map is left alone (the uniform shift)
    (u,) = with_maps([FitParameter("E.I_e", -0.1, 0.1, mode="shift")], spec, None)
    assert u.map is None


def test_param_syntax_and_yaml_name_a_map(tmp_path):
    p, c = parse_param("E.I_e=-0.1:0.1@0/shift:T1T2")
    assert (p.name, p.mode, p.map_name, c) == ("E.I_e", "shift", "t1t2", 0.0)
    with pytest.raises(ConfigError, match="a map follows /shift only"):
        parse_param("E.I_e=0.5:2/scale:t1t2")
    (tmp_path / "p.yaml").write_text("parameters:\n  - {name: E.g_AMPA, low: -0.1, high: 0.1,"
                                     " mode: shift, map: sc_strength}\n")
    a = _parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv", "--params",
                              str(tmp_path / "p.yaml")])
    assert check_args(a).params[0].map_name == "sc_strength"
    (tmp_path / "q.yaml").write_text("parameters:\n  - {name: E.g_AMPA, low: 0.5, high: 2,"
                                     " map: sc_strength}\n")
    a.params = str(tmp_path / "q.yaml")
    with pytest.raises(ConfigError, match=r"parameters\[0\]\.map.*mode: shift"):
        check_args(a)
    # a table's map without --maps is refused before anything is read
    a = _parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv", "--param",
                              "E.I_e=-0.1:0.1/shift:t1t2"])
    with pytest.raises(ConfigError, match=r"map\(s\) \['t1t2'\] -- expected --maps"):
        check_args(a)


def _fit_args(d: Path, *extra: str) -> list[str]:
    return ["fit", "--brain", str(d / "brain.h5"), "--bold", str(d / "bold.csv"),
            "--tr", "0.72", "--fit-trs", "0:60", "--test-trs", "60:120", "--window", "10",
            "--members", "4", "--fc-components", "2", *extra]


def test_load_inputs_resolves_the_maps_and_records_the_table(brain, tmp_path):
    d, spec = brain
    labels = [int(x) for x in spec.region_labels]
    maps = _csv(tmp_path / "maps.csv", ["label", "gradient"],
                [[lab, float(k)] for k, lab in enumerate(labels)])
    a = _parser().parse_args(_fit_args(d, "--param", "E.I_e=-0.1:0.1/shift:gradient",
                                       "--param", "coupling=0.5:2", "--maps", str(maps)))
    inp = load_inputs(check_args(a))
    got = {p.name: p for p in inp.params}
    np.testing.assert_allclose(got["E.I_e"].map,
                               _z(np.arange(R))[np.asarray(spec.unit_region)])
    assert got["coupling"].map is None
    assert inp.source["maps"] == str(maps.resolve()) and len(inp.source["maps_sha256"]) == 64


@pytest.mark.parametrize("rows, head, match", [
    ([[10, 1.0], [20, 2.0], [30, 3.0], [40, 4.0]], ["label", "gradient"],
     "no row for region 50"),
    ([[lab, 2.0] for lab in (10, 20, 30, 40, 50)], ["label", "gradient"], "constant"),
    ([[lab, float(lab)] for lab in (10, 20, 30, 40, 50)], ["label", "other"],
     "a column named 'gradient'"),
    ([[lab, float(lab)] for lab in (10, 20, 30, 40, 50)], ["region", "gradient"],
     "a 'label' or 'name' column"),
    ([[10, 1.0], [10, 2.0]], ["label", "gradient"], "each region label once"),
    ([[10, "high"]], ["label", "gradient"], "line 2: column 'gradient'"),
])
def test_a_bad_map_table_is_refused_naming_the_file(brain, tmp_path, capsys, rows, head,
                                                    match):
    d, _ = brain
    maps = _csv(tmp_path / "maps.csv", head, rows)
    out = tmp_path / "run"
    assert main(_fit_args(d, "--param", "E.I_e=-0.1:0.1/shift:gradient", "--maps", str(maps),
                          "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert "maps.csv" in err and match in err, err
    assert not out.exists()
    with pytest.raises(InputError, match="maps.csv"):
        spec = BrainSpec.load(d / "brain.h5")
        p = FitParameter("E.I_e", -0.1, 0.1, mode="shift", map_name="gradient")
        with_maps([p], spec, maps)
