"""Issue 14, items 6, 8, 11 and 12: every bad input refused naming the file and the field,
exit status 2, nothing half-written; each case is the issue's reproduction.

Before the fixes: a brain file's projection kind 'teleport' loaded (and ran as long-range);
garbage JSON or attributes raised JSONDecodeError / ValueError; ``--tr 1e-9`` ran to
"complete"; ``--neurons 10**30`` built 7.4e18 neurons with negative sizes; a zero tract
length with a weight became a one-step delay; an alias bomb ran without bound; non-UTF-8
YAML gave a codec error without the file; deeply nested YAML a RecursionError;
``--param V_th=nan`` blamed V_reset; ``--record bold:0`` meant off; a sweep value of the
wrong type reached the cluster; ``--t 1e12`` ended in a 7 TiB allocation traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dtb.brain.build import BuildOptions, build
from dtb.brain.spec import BrainSpec
from dtb.cli.main import main
from dtb.data import demo_inputs
from dtb.errors import ConfigError, InputError
from dtb.model.config import MAX_YAML_DEPTH, load_config, read_yaml


@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("brain") / "brain.h5"
    d = demo_inputs()
    build(atlas=d["atlas"], gm=d["gm"], regions=d["regions"], sc=d["sc"],
          lengths=d["lengths"], options=BuildOptions(neurons=3000)).save(p)
    return p


def _edit(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as h:
        edit(h)
    return dst


def _set_attr(where: str, name: str, value):
    def edit(h):
        h[where].attrs[name] = value
    return edit


def _set_data(name: str, fn):
    def edit(h):
        a = h[name][()]
        del h[name]
        h[name] = fn(a)
    return edit


BRAIN_CASES = {
    # the issue's: an unknown projection kind, garbage JSON, garbage attributes
    "kind teleport": (_set_attr("projections/0000", "kind", "teleport"),
                      "projections/0000.attrs['kind']: 'teleport' -- expected unit_local or "
                      "long_range"),
    "params not JSON": (_set_attr("families/E", "params", "{not json"),
                        "families/E.attrs['params']: '{not json' -- expected JSON"),
    "weight a list": (_set_attr("projections/0001", "weight", "[1, 2]"),
                      "projections/0001.attrs['weight']: [1, 2] -- expected a number or"),
    "delay garbage dist": (_set_attr("projections/0000", "delay",
                                     json.dumps({"dist": "uniform", "low": "a"})),
                           "projections/0000.attrs['delay']"),
    "options not JSON": (_set_attr("/", "options", "\x01{"), "options: '\\x01{' -- "
                                                              "expected JSON"),
    "format_version text": (_set_attr("/", "format_version", "abc"),
                            "format_version: 'abc' -- expected an integer"),
    "type X": (_set_attr("families/E", "type", "X"), "families/E.attrs['type']: 'X'"),
    "model unknown": (_set_attr("families/I", "model", "hh"),
                      "families/I.attrs['model']: 'hh' -- expected one of"),
    "receptor unknown": (_set_attr("projections/0000", "receptor", "NMDA2"),
                         "projections/0000.attrs['receptor']: 'NMDA2' -- expected a receptor"),
    "inputs wrong": (_set_attr("families/E", "inputs", json.dumps([{"type": "ou"}])),
                     "families/E.attrs[inputs[0].mean]"),
    "param unknown": (_set_attr("families/E", "params", json.dumps({"V_top": 1})),
                      "families/E.attrs[params.V_top]"),
    "sizes negative": (_set_data("families/E/sizes", lambda a: a - 10**6),
                       "families/E/sizes: "),
    "weights NaN": (_set_data("connectome/weights", lambda a: np.where(a > 0, np.nan, a)),
                    "connectome/weights: nan at "),
    "sizes as text": (_set_data("families/E/sizes", lambda a: a.astype("S8")),
                      "families/E/sizes: dtype |S8 -- expected integers"),
    "hyper wrong length": (_set_data("families/E/hyper/g_AMPA", lambda a: a[:3]),
                           "families/E/hyper/g_AMPA: 'shape (3,)'"),
    # item 8: a tract with weight but no length (conduction 0) is refused, not one step
    "zero conduction": (_set_data("connectome/conduction_ms", lambda a: a * 0),
                        "conduction_ms[0][1]: 0.0 -- expected a conduction delay > 0 ms where "
                        "the weight is > 0"),
    "missing group": (lambda h: h.__delitem__("projections"), "projections: 'missing'"),
}


@pytest.mark.parametrize("case", list(BRAIN_CASES))
def test_brain_file_fields_validated_and_named(brain, tmp_path, case):
    edit, needle = BRAIN_CASES[case]
    bad = _edit(brain, tmp_path / "bad.h5", edit)
    with pytest.raises(InputError) as e:
        BrainSpec.load(bad)
    assert str(bad) in str(e.value) and needle in str(e.value), str(e.value)
    assert len(str(e.value)) < 600


def test_teleport_brain_refused_by_simulate(brain, tmp_path, capsys):
    bad = _edit(brain, tmp_path / "bad.h5", BRAIN_CASES["kind teleport"][0])
    out = tmp_path / "run"
    assert main(["simulate", "--brain", str(bad), "--t", "5", "--out", str(out),
                 "--quiet"]) == 2
    assert "teleport" in capsys.readouterr().err and not out.exists()


def test_zero_tract_length_with_weight_refused_at_build(tmp_path):
    d = demo_inputs()
    rows = Path(d["lengths"]).read_text().splitlines()
    cells = rows[1].split(",")
    w = Path(d["sc"]).read_text().splitlines()[1].split(",")
    j = next(k for k in range(2, len(w)) if float(w[k]) > 0)     # a weighted entry of row 1
    cells[j] = "0"
    lengths = tmp_path / "lengths.csv"
    lengths.write_text("\n".join([rows[0], ",".join(cells), *rows[2:]]) + "\n")
    with pytest.raises(InputError, match=r"lengths\.csv: lengths entry \(row .*column .*\): "
                                         r"0\.0 -- expected a tract length > 0 mm"):
        build(atlas=d["atlas"], gm=d["gm"], regions=d["regions"], sc=d["sc"],
              lengths=str(lengths), options=BuildOptions(neurons=3000))


def test_build_neurons_bounded_by_the_memory_they_imply(tmp_path, capsys):
    out = tmp_path / "big.h5"
    assert main(["build", "--demo", "--neurons", str(10**30), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "neurons: 1000000000000000000000000000000 -- expected at most 1e+12" in err
    assert "8.64e+32 bytes" in err and not out.exists()


@pytest.mark.parametrize("tr,needle", [
    ("1e-09", "--tr: 1e-09 s -- expected a whole number of 4 pieces of whole time steps of "
              "0.5 ms, i.e. a multiple of 0.002 s"),
    ("0.801", "(nearest: 0.8, 0.802 s)"),
])
def test_assimilate_tr_must_hold_whole_steps(brain, tmp_path, capsys, tr, needle):
    bold = tmp_path / "bold.csv"
    labels = [int(x) for x in BrainSpec.load(brain).region_labels]
    bold.write_text(",".join(map(str, labels)) + "\n"
                    + ("," .join(["0.0"] * len(labels)) + "\n") * 12)
    out = tmp_path / "run"
    assert main(["assimilate", "--brain", str(brain), "--bold", str(bold), "--tr", tr,
                 "--dt", "0.5", "--out", str(out), "--quiet"]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


# --- YAML (items 11, 12) -------------------------------------------------------------------

GOOD = """simulation: {dt: 0.1, t: 10.0}
populations:
  - {name: E, size: 10, model: iaf_psc_exp}
"""


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\npopulations: *a{levels - 1}\n"


def test_alias_bomb_refused_quickly(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(_bomb())                       # 9^9 = 387 million values once expanded
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="once aliases are expanded -- expected at most"):
        load_config(f)
    assert time.perf_counter() - t0 < 5


def test_messages_stay_short_for_huge_values(tmp_path):
    """A small bomb (within the node limit) that fails validation: its value is repr'd
    into the message, elided."""
    f = tmp_path / "small-bomb.yaml"
    f.write_text(_bomb(6))                      # 531,441 values: under the limit
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value) and len(str(e.value)) < 20_000


def test_recursive_alias_and_deep_nesting_named(tmp_path):
    f = tmp_path / "rec.yaml"
    f.write_text("populations: &p [*p]\n")
    with pytest.raises(ConfigError, match="(?s)rec.yaml.*recursive alias"):
        load_config(f)
    for depth in (MAX_YAML_DEPTH + 5, 5000):
        f = tmp_path / f"deep{depth}.yaml"
        f.write_text("populations: " + "[" * depth + "]" * depth + "\n")
        with pytest.raises(ConfigError, match=f"(?s)deep{depth}.yaml.*nested"):
            load_config(f)


def test_non_utf8_and_oversized_yaml_named(tmp_path, monkeypatch):
    f = tmp_path / "latin1.yaml"
    f.write_bytes(GOOD.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"(?s)latin1\.yaml.*byte \d+ \(line 4\): b'\\xe9' -- "
                                          "expected UTF-8 text"):
        load_config(f)
    import dtb.model.yamlfile

    monkeypatch.setattr(dtb.model.yamlfile, "MAX_CONFIG_BYTES", 64)
    g = tmp_path / "good.yaml"
    g.write_text(GOOD)
    with pytest.raises(ConfigError, match=r"(?s)good\.yaml.*file of \d+ bytes -- expected a "
                                          "config of at most 64 bytes"):
        read_yaml(g)


def test_cli_exit_2_for_bad_yaml(tmp_path, capsys):
    f = tmp_path / "bomb.yaml"
    f.write_text(_bomb())
    assert main(["simulate", str(f), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "bomb.yaml" in capsys.readouterr().err and not (tmp_path / "r").exists()


# --- item 12: values blamed correctly ------------------------------------------------------

def test_nan_parameter_blames_itself(tmp_path, capsys):
    assert main(["build", "--demo", "--param", "V_th=nan", "-o", str(tmp_path / "b.h5")]) == 2
    err = capsys.readouterr().err
    assert "--param: V_th: 'nan' -- expected a finite number" in err and "V_reset" not in err
    from dtb.model.neurons import LIF_COND, check_params

    bad = check_params(LIF_COND, {**LIF_COND.defaults, "V_th": float("nan")})
    assert [b[0] for b in bad] == ["V_th"]


def test_record_bold_zero_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "--model", "microcircuit", "--scale", "0.02", "--t", "5",
                 "--record", "bold:0", "--out", str(out), "--quiet"]) == 2
    assert "--record.bold: '0' -- expected" in capsys.readouterr().err and not out.exists()


def test_sweep_values_type_checked(tmp_path, capsys):
    f = tmp_path / "sweep.csv"
    f.write_text("seed,scale,backend,quiet\n1,0.1,cpu,true\nx,0.1,cpu,\n2,nan,tpu,\n")
    assert main(["job", "slurm", "--model", "microcircuit", "--sweep", str(f)]) == 2
    err = capsys.readouterr().err
    assert "row 1: seed: 'x' -- expected an integer" in err
    assert "row 2: scale: 'nan' -- expected a finite number" in err
    assert "row 2: backend: 'tpu' -- expected one of cpu, gpu" in err
    assert "row 0" not in err


@pytest.mark.parametrize("t,needle", [
    ("1e12", "1.1e+12 rows) would take 2.64e+13 bytes"),
    ("1e300", "expected fewer than 2^53 time steps"),
])
def test_t_bounded_by_the_memory_it_implies(tmp_path, capsys, t, needle):
    out = tmp_path / "run"
    assert main(["simulate", "--model", "microcircuit", "--scale", "0.02", "--t", t,
                 "--out", str(out), "--quiet"]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_damaged_bold_hdf5_named(tmp_path):
    from dtb.assimilation.observations import read_bold

    f = tmp_path / "bold.h5"
    with h5py.File(f, "w") as h:
        d = h.create_dataset("bold", data=np.zeros((12, 3)))
        d.attrs["labels"] = [1, 2, 3]
    raw = f.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="cut.h5"):
        read_bold(str(tmp_path / "cut.h5"), 0.8)
