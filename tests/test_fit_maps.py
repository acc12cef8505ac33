"""Spatial maps for ``dtb fit`` (issue 13): regional parameters written as a coefficient of
a map from a region table (or the built-in SC strength), so that 80-200 regions are not
80-200 free numbers.  Checked against values computed here by hand: the table read and
put in the brain's region order, standardised, given to every unit of its region, and the
shifted hyperparameter equal to nominal + x * map."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dtb.assimilation.fit import FitParameter, _nominal, hyper_values, parameter_keys
from dtb.assimilation.fit_inputs import load_inputs, with_maps
from dtb.assimilation.fit_options import check_args, parse_param
from dtb.assimilation.fit_score import regional_scores
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


def test_several_parameters_on_one_hyperparameter_compose(brain):
    """Two maps shift E.I_e, a scale and a uniform shift act on E.g_AMPA: every unit's
    value is nominal x scale + the sum of the shifts, by hand; records name them apart."""
    _, spec = brain
    ur = np.asarray(spec.unit_region)
    m1 = sc_strength_map(spec.weights)
    m2 = _z(np.arange(R, dtype=float) ** 2)
    params = [FitParameter("coupling", 0.5, 2.0),
              FitParameter("E.I_e", -0.1, 0.1, mode="shift", map=m1[ur],
                           map_name="sc_strength"),
              FitParameter("E.I_e", -0.1, 0.1, mode="shift", map=m2[ur], map_name="grad"),
              FitParameter("E.g_AMPA", -0.01, 0.01, mode="shift"),
              FitParameter("E.g_AMPA", 0.5, 2.0)]
    assert parameter_keys(params) == ["coupling", "E.I_e:sc_strength", "E.I_e:grad",
                                      "E.g_AMPA:shift", "E.g_AMPA:scale"]
    assert parameter_keys(params[:2]) == ["coupling", "E.I_e"]     # alone: its name
    got = hyper_values(spec, params, np.array([1.0, 0.03, -0.05, 0.002, 1.5]))
    np.testing.assert_allclose(got["E.I_e"], _nominal(spec, "E.I_e") + 0.03 * m1[ur]
                               - 0.05 * m2[ur])
    np.testing.assert_allclose(got["E.g_AMPA"], 1.5 * _nominal(spec, "E.g_AMPA") + 0.002)
    # the twin's regional score: the truth's pattern against the posterior mean's
    truth = np.array([1.0, 0.03, -0.05, 0.0, 1.0])
    post = np.array([1.2, 0.03, 0.0, 0.0, 1.0])           # the second map missed
    sc = regional_scores(spec, params, truth, post, [1.0, 0.0, 0.0, 0.0, 1.0])
    assert set(sc) == {"E.I_e"}                           # g_AMPA is uniform in the truth
    t_pat, p_pat = 0.03 * m1 - 0.05 * m2, 0.03 * m1
    assert sc["E.I_e"]["corr_with_truth"] == pytest.approx(np.corrcoef(p_pat, t_pat)[0, 1])
    assert sc["E.I_e"]["rmse"] == pytest.approx(np.sqrt(np.mean((p_pat - t_pat) ** 2)))
    assert sc["E.I_e"]["rmse_prior_centre"] == pytest.approx(np.sqrt(np.mean(t_pat ** 2)))
    assert regional_scores(spec, params, truth, truth, list(truth))["E.I_e"][
        "corr_with_truth"] == pytest.approx(1.0)


def test_two_maps_on_one_hyperparameter_through_the_command(brain, tmp_path):
    """``--param E.I_e=.../shift:sc_strength --param E.I_e=.../shift:grad``: accepted,
    truths and scores keyed NAME:MAP, the fitted brain's I_e the sum of both shifts; the
    same map twice and a bare name that no longer says which are refused."""
    d, spec = brain
    labels = [int(x) for x in spec.region_labels]
    maps = _csv(tmp_path / "maps.csv", ["label", "grad"],
                [[lab, float(k) ** 2] for k, lab in enumerate(labels)])
    two = ["--param", "E.I_e=-0.1:0.1@0/shift:sc_strength",
           "--param", "E.I_e=-0.1:0.1@0/shift:grad", "--maps", str(maps)]
    out = tmp_path / "run"
    args = ["fit", "--brain", str(d / "brain.h5"), "--bold", str(d / "bold.csv"),
            "--tr", "0.05", "--fit-trs", "0:60", "--test-trs", "60:120", "--window", "10",
            "--step", "5", "--members", "4", "--iterations", "1", "--noise-runs", "3",
            "--fc-components", "2", "--observable", "rates", "--spinup-s", "0",
            "--substeps", "1", *two, "--truth", "E.I_e:sc_strength=0.04",
            "--truth", "E.I_e:grad=-0.02", "--out", str(out), "-q"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["twin"]) == {"E.I_e:sc_strength", "E.I_e:grad"}
    assert list(m["fit"]["posterior_mean"]) == ["E.I_e:sc_strength", "E.I_e:grad"]
    reg = m["twin_regional"]["E.I_e"]
    assert reg["regions"] == R and -1 <= reg["corr_with_truth"] <= 1
    a, b = m["fit"]["posterior_mean"].values()
    ur = np.asarray(spec.unit_region)
    want = (_nominal(spec, "E.I_e") + a * sc_strength_map(spec.weights)[ur]
            + b * _z(np.arange(R, dtype=float) ** 2)[ur])
    fitted = BrainSpec.load(out / "brain_fitted.h5")
    got = next(f for f in fitted.families if f.name == "E").hyper["I_e"]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    a = _parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv", *two,
                              "--param", "E.I_e=-0.2:0.2/shift:grad"])
    with pytest.raises(ConfigError, match=r"\['E.I_e:grad'\] given more than once"):
        check_args(a)
    a = _parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv", *two,
                              "--truth", "E.I_e=0.01"])
    with pytest.raises(ConfigError, match=r"--truth: 'E.I_e' -- expected one of"):
        check_args(a)


def test_regional_coupling_along_the_group_fc_strength_through_the_command(brain, tmp_path):
    """``--param regional_coupling=.../shift:group_fc_strength --group-fc FILE``: the map is
    each region's mean correlation in the group FC (columns in another order, matched by
    name), standardised; the fitted brain's long-range in-degrees are the built ones times
    exp(b x map), normalised, at the posterior mean b; without --group-fc it is refused
    before anything is read."""
    d, spec = brain
    names = [str(n) for n in spec.region_names]
    rng = np.random.default_rng(5)
    shared = rng.normal(size=(200, 1)) * np.array([0.2, 0.5, 1.0, 1.5, 2.0])
    c = np.corrcoef((shared + rng.normal(size=(200, R))).T)   # unequal regional strength
    order = list(range(R))[::-1]
    _csv(tmp_path / "group.csv", [names[i] for i in order],
         c[np.ix_(order, order)].tolist())
    want_map = _z([(c[i].sum() - 1.0) / (R - 1) for i in range(R)])
    out = tmp_path / "run"
    args = ["fit", "--brain", str(d / "brain.h5"), "--bold", str(d / "bold.csv"),
            "--tr", "0.05", "--fit-trs", "0:60", "--test-trs", "60:120", "--window", "10",
            "--step", "5", "--members", "4", "--iterations", "1", "--noise-runs", "3",
            "--fc-components", "2", "--observable", "rates", "--spinup-s", "0",
            "--substeps", "1", "--param", "regional_coupling=-0.5:0.5@0/shift:group_fc_strength",
            "--group-fc", str(tmp_path / "group.csv"), "--out", str(out), "-q"]
    inp = load_inputs(check_args(_parser().parse_args(args)))
    ur = np.asarray(spec.unit_region)
    np.testing.assert_allclose(inp.params[0].map, want_map[ur], atol=1e-12)
    assert main(args) == 0
    b = json.loads((out / "metrics.json").read_text())["fit"]["posterior_mean"][
        "regional_coupling"]
    assert -0.5 < b < 0.5 and b != 0.0
    gain = np.exp(b * want_map[ur])
    gain /= np.average(gain, weights=spec.neurons_per_unit())
    fitted = BrainSpec.load(out / "brain_fitted.h5")
    lr = [(r0, r1) for r0, r1 in zip(spec.rules, fitted.rules, strict=True)
          if r0.kind == "long_range"]
    assert lr
    for r0, r1 in lr:
        k0 = np.broadcast_to(np.asarray(r0.k), ur.shape)
        np.testing.assert_array_equal(r1.k, np.floor(k0 * gain + 0.5).astype(np.int64))
    no_group = [x for x in args if x not in ("--group-fc", str(tmp_path / "group.csv"))]
    with pytest.raises(ConfigError, match="group_fc_strength.*--group-fc"):
        check_args(_parser().parse_args(no_group))
    with pytest.raises(ConfigError, match="along a map"):
        check_args(_parser().parse_args(
            [x if not x.startswith("regional_coupling") else "regional_coupling=-0.5:0.5"
             for x in no_group]))
