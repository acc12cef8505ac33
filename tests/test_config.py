"""Configuration validation: every problem is reported, before anything is built, with the
field's path and the offending value."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import dtb


def base() -> dict:
    return {
        "name": "test",
        "populations": [
            {"name": "E", "size": 40, "model": "iaf_psc_exp", "type": "E",
             "params": {"tau_m": 10.0},
             "inputs": [{"type": "poisson", "rate": 8.0, "weight": 87.8, "in_degree": 100}]},
            {"name": "I", "size": 10, "model": "lif_cond", "type": "I",
             "inputs": [{"type": "ou", "mean": 0.5, "sigma": 0.1, "tau": 10.0}]},
        ],
        "projections": [
            {"source": "E", "target": "I", "rule": {"kind": "pairwise_bernoulli", "p": 0.2},
             "weight": 0.01, "delay": 1.0},
            {"source": "I", "target": "E", "rule": {"kind": "fixed_indegree", "k": 5},
             "weight": {"dist": "normal", "mean": -50.0, "std": 5.0, "high": 0.0},
             "delay": {"dist": "uniform", "low": 0.5, "high": 2.0}},
        ],
    }


def problems(d: dict, dt: float = 0.1) -> str:
    with pytest.raises(dtb.ConfigError) as exc:
        dtb.parse_network(d, dt)
    return str(exc.value)


def test_base_config_is_valid():
    net = dtb.parse_network(base(), 0.1)
    assert [p.name for p in net.populations] == ["E", "I"]
    assert net.projections[0].receptor == "E"  # from the source's type (lif_cond target)
    assert net.projections[1].receptor == "in"  # I source onto iaf_psc_exp


def mutate(path_fn):
    d = base()
    path_fn(d)
    return d


CASES = [
    # (mutation, field path in the message, value in the message)
    (lambda d: d.update(colour="red"), "network.colour", "'red'"),
    (lambda d: d["populations"][0].update(sise=3), "populations[0].sise", "3"),
    (lambda d: d["populations"][1].update(size=-5), "populations[1].size", "-5"),
    (lambda d: d["populations"][1].update(size=2.5), "populations[1].size", "2.5"),
    (lambda d: d["populations"][0].update(model="hh_psc"), "populations[0].model", "'hh_psc'"),
    (lambda d: d["projections"][0]["rule"].update(p=1.5), "projections[0].rule.p", "1.5"),
    (lambda d: d["projections"][0]["rule"].update(p=-0.1), "projections[0].rule.p", "-0.1"),
    (lambda d: d["projections"][1]["rule"].update(k=-1), "projections[1].rule.k", "-1"),
    (lambda d: d["projections"][0].update(delay=0.05), "projections[0].delay", "0.05"),
    (lambda d: d["projections"][0].update(delay={"dist": "normal", "mean": 1.5, "std": 0.75}),
     "projections[0].delay", "'mean': 1.5"),
    (lambda d: d["projections"][0].update(source="L9E"), "projections[0].source", "'L9E'"),
    (lambda d: d["projections"][1].update(target="X"), "projections[1].target", "'X'"),
    (lambda d: d["populations"][0]["params"].update(tau_x=3.0),
     "populations[0].params.tau_x", "3.0"),
    (lambda d: d["populations"][1].update(params={"tau_m": 3.0}),  # psc name on lif_cond
     "populations[1].params.tau_m", "3.0"),
    (lambda d: d["populations"][0]["params"].update(tau_m=-10.0),
     "populations[0].params.tau_m", "-10.0"),
    (lambda d: d["populations"][0]["params"].update(V_reset=-40.0),
     "populations[0].params.V_reset", "-40.0"),
    (lambda d: d["projections"][0].update(receptor="GABA_C"),
     "projections[0].receptor", "'GABA_C'"),
    (lambda d: d["projections"][1].update(receptor="NMDA"),  # lif_cond receptor on psc target
     "projections[1].receptor", "'NMDA'"),
    (lambda d: d["populations"][0]["inputs"][0].update(receptor="AMPA"),
     "populations[0].inputs[0].receptor", "'AMPA'"),
    (lambda d: d["populations"][0]["inputs"][0].update(rate=-8.0),
     "populations[0].inputs[0].rate", "-8.0"),
    (lambda d: d["populations"][1]["inputs"][0].update(tau=0.0),
     "populations[1].inputs[0].tau", "0.0"),
    (lambda d: d["populations"][0]["inputs"].append({"type": "spline"}),
     "populations[0].inputs[1].type", "'spline'"),
    (lambda d: d["projections"][0].update(weight=-0.01),  # conductance weights are >= 0
     "projections[0].weight", "-0.01"),
    (lambda d: d["projections"][1].update(weight=50.0, receptor="in"),
     "projections[1].weight", "50.0"),
    (lambda d: d["projections"][1]["rule"].update(kind="all_to_all"),
     "projections[1].rule.kind", "'all_to_all'"),
    (lambda d: d["projections"][1].update(multapses="no"), "projections[1].multapses", "'no'"),
    (lambda d: d["populations"][1].update(name="E"), "populations[1].name", "'E'"),
    (lambda d: d["populations"][1].update(name="2nd"), "populations[1].name", "'2nd'"),
    (lambda d: d["projections"][0].update(weight={"dist": "gamma", "k": 2}),
     "projections[0].weight.dist", "'gamma'"),
    (lambda d: d["projections"][1].update(delay={"dist": "uniform", "low": 2.0, "high": 1.0}),
     "projections[1].delay.high", "1.0"),
    (lambda d: d["projections"][0].update(delay=7000.0), "projections[0].delay", "7000.0"),
    (lambda d: d["projections"][1].update(rule={"kind": "fixed_indegree", "k": 11},
                                          source="I", target="I", multapses=False,
                                          autapses=False),
     "projections[1].rule.k", "11"),
]


@pytest.mark.parametrize("mutation,path,value", CASES,
                         ids=[f"{c[1]}={c[2]}" for c in CASES])
def test_invalid_field_named_with_value(mutation, path, value):
    msg = problems(mutate(mutation))
    line = next((ln for ln in msg.splitlines() if path + ":" in ln), None)
    assert line is not None, f"{path} not named in:\n{msg}"
    assert value in line, f"{value} not in: {line}"


def test_all_problems_reported_at_once():
    d = base()
    d["populations"][0]["size"] = 0
    d["populations"][0]["inputs"][0]["rate"] = -1.0
    d["populations"][1]["params"] = {"g_L": -0.03}
    d["projections"][0]["rule"]["p"] = 2.0
    with pytest.raises(dtb.ConfigError) as exc:
        dtb.parse_network(d, 0.1)
    err = exc.value
    text = "\n".join(err.problems)
    paths = ("populations[0].size", "populations[0].inputs[0].rate", "populations[1].params.g_L",
             "projections[0].rule.p")
    for path in paths:
        assert path in text
    assert len(err.problems) >= len(paths)
    assert f"({len(err.problems)} problems)" in str(err)


def test_delay_checked_against_the_time_step():
    d = base()
    d["projections"][0]["delay"] = 0.5
    dtb.parse_network(d, 0.1)
    assert "projections[0].delay" in problems(d, dt=1.0)


def test_engine_rejects_invalid_network_before_building():
    """A 2**31-neuron population would take minutes and many GiB to build; the error about
    another field comes first."""
    d = base()
    d["populations"][0]["size"] = 2**31
    d["projections"][0]["rule"]["p"] = 7.0
    with pytest.raises(dtb.ConfigError, match=r"projections\[0\]\.rule\.p: 7\.0"):
        dtb.Engine(_as_network_unchecked(d))


def _as_network_unchecked(d: dict) -> dtb.Network:
    """Build Network objects directly (no validation), as a Python user would."""
    pops = tuple(dtb.Population(p["name"], p["size"], model=p["model"], type=p.get("type"))
                 for p in d["populations"])
    projs = []
    for q in d["projections"]:
        r = q["rule"]
        rule = (dtb.PairwiseBernoulli(r["p"]) if r["kind"] == "pairwise_bernoulli"
                else dtb.FixedInDegree(r["k"]))
        w = q["weight"] if not isinstance(q["weight"], dict) else -50.0
        dl = q["delay"] if not isinstance(q["delay"], dict) else 1.0
        projs.append(dtb.Projection(q["source"], q["target"], rule, w, dl))
    return dtb.Network(pops, tuple(projs))


def test_python_objects_validated_like_yaml():
    net = dtb.Network(
        populations=(dtb.Population("a", 10, model="iaf_psc_exp", params={"tau_mm": 1.0}),),
        projections=(dtb.Projection("a", "b", dtb.FixedInDegree(1), 1.0, 1.0),),
    )
    with pytest.raises(dtb.ConfigError) as exc:
        dtb.Engine(net)
    msg = str(exc.value)
    assert "populations[0].params.tau_mm" in msg
    assert "projections[0].target: 'b'" in msg


def test_lif_cond_needs_a_receptor_or_source_type():
    d = base()
    del d["populations"][0]["type"]
    msg = problems(d)
    assert "projections[0].receptor" in msg
    d["projections"][0]["receptor"] = "AMPA"
    assert dtb.parse_network(d, 0.1).projections[0].receptor == "AMPA"


# --- YAML files ---------------------------------------------------------------------------

YAML = """
name: two_pops
simulation:
  dt: 0.1
  t: 50.0
  seed: 123
populations:
  - name: E
    size: 50
    model: iaf_psc_exp
    type: E
    initial:
      V: {dist: normal, mean: -58.0, std: 5.0}
    inputs:
      - {type: poisson, rate: 8.0, weight: 87.8, in_degree: 1500}
  - name: I
    size: 20
    model: iaf_psc_exp
    type: I
    params:
      t_ref: {dist: uniform, low: 1.0, high: 3.0}
    inputs:
      - {type: dc, amplitude: 400.0}
projections:
  - source: E
    target: I
    rule: {kind: fixed_indegree, k: 10}
    weight: {dist: normal, mean: 87.8, std: 8.78, low: 0.0}
    delay: {dist: normal, mean: 1.5, std: 0.75, low: 0.1}
  - source: I
    target: E
    rule: {kind: fixed_total_number, n: 400}
    weight: -351.2
    delay: 0.8
    autapses: false
"""


def test_load_valid_yaml(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(YAML))
    net, sim = dtb.load_config(path)
    assert (sim.dt, sim.t, sim.seed) == (0.1, 50.0, 123)
    assert net.name == "two_pops"
    assert [(p.name, p.size, p.model) for p in net.populations] == [
        ("E", 50, "iaf_psc_exp"), ("I", 20, "iaf_psc_exp")]
    assert net.population("I").params["t_ref"] == dtb.Dist.uniform(1.0, 3.0)
    assert net.population("E").initial["V"] == dtb.Dist.normal(-58.0, 5.0)
    assert net.projections[1].rule == dtb.FixedTotalNumber(400)
    assert net.projections[0].receptor == "ex" and net.projections[1].receptor == "in"
    assert net.projections[1].autapses is False
    eng = dtb.Engine(net, dt=sim.dt, seed=sim.seed)
    assert eng.n_synapses == 20 * 10 + 400
    eng.run(sim.t)
    assert len(eng.spikes()[0]) > 0


def test_yaml_round_trip_through_to_dict(tmp_path):
    import yaml

    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(YAML))
    net, _ = dtb.load_config(path)
    path2 = tmp_path / "again.yaml"
    path2.write_text(yaml.safe_dump(net.to_dict()))
    net2, _ = dtb.load_config(path2)
    assert net2 == net
    a = dtb.Engine(net, seed=1)
    b = dtb.Engine(net2, seed=1)
    np.testing.assert_array_equal(a.synapse_arrays.tgt, b.synapse_arrays.tgt)
    np.testing.assert_array_equal(a.synapse_arrays.wq, b.synapse_arrays.wq)


@pytest.mark.parametrize("text,path,value", [
    (YAML.replace("seed: 123", "seed: -1"), "simulation.seed", "-1"),
    (YAML.replace("dt: 0.1", "dt: 0"), "simulation.dt", "0"),
    (YAML.replace("  t: 50.0", "  t: 50.0\n  tt: 3"), "simulation.tt", "3"),
    (YAML.replace("k: 10", "k: ten"), "projections[0].rule.k", "'ten'"),
    (YAML.replace("size: 20", "size: -20"), "populations[1].size", "-20"),
    (YAML.replace("std: 8.78", "std: -8.78"), "projections[0].weight.std", "-8.78"),
])
def test_invalid_yaml_names_file_field_and_value(tmp_path, text, path, value):
    f = tmp_path / "bad.yaml"
    f.write_text(textwrap.dedent(text))
    with pytest.raises(dtb.ConfigError) as exc:
        dtb.load_config(f)
    msg = str(exc.value)
    assert str(f) in msg
    line = next((ln for ln in msg.splitlines() if path + ":" in ln), None)
    assert line is not None, msg
    assert value in line


def test_unreadable_or_malformed_yaml(tmp_path):
    with pytest.raises(dtb.ConfigError, match="cannot read"):
        dtb.load_config(tmp_path / "missing.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("populations: [ {name: a, size: 3\n")
    with pytest.raises(dtb.ConfigError, match="not valid YAML"):
        dtb.load_config(f)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        dtb.parse_network({"populations": []}, 0.1)


@pytest.mark.parametrize("kwargs,name", [({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"),
                                         ({"seed": 1.5}, "seed"), ({"dt": 0.0}, "dt"),
                                         ({"dt": -0.1}, "dt")])
def test_engine_arguments_validated(kwargs, name):
    net = dtb.parse_network(base(), 0.1)
    with pytest.raises(ValueError, match=rf"^{name}: "):
        dtb.Engine(net, **kwargs)


def test_negative_run_time_rejected():
    eng = dtb.Engine(dtb.parse_network(base(), 0.1))
    with pytest.raises(ValueError, match="t: -1.0"):
        eng.run(-1.0)
    eng.run(0.0)
    assert eng.step == 0
