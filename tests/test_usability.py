"""Smaller defects a new user met (issue 15, defect 7): command-line errors in the command
line's terms, the minimum of --neurons, series.zarr opening in xarray without a warning,
and BOLD TRs with their unit on --record."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from dtb.brain.build import BuildOptions, build
from dtb.cli.main import main
from dtb.data import demo_inputs
from dtb.errors import ConfigError, InputError, OutputError
from dtb.io.rundir import RunDirectory
from dtb.model.config import parse_network
from dtb.model.record_spec import resolve_record

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ei_lif_cond.yaml"
W = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 3.0], [1.0, 3.0, 0.0]])
L = np.array([[0.0, 20.0, 30.0], [20.0, 0.0, 25.0], [30.0, 25.0, 0.0]])


def _csv(path: Path, m: np.ndarray, header: bool = True) -> Path:
    rows = [",".join(repr(float(x)) for x in r) for r in m]
    path.write_text("\n".join((["1,2,3"] if header else []) + rows) + "\n")
    return path


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) in (1, 2)
    return capsys.readouterr().err


def test_cli_errors_name_flags_not_python_arguments(tmp_path: Path, capsys):
    """Regression: 'pass --overwrite (overwrite=True)', 'pass symmetrize=True', 'labels='
    on the command line.  The command line names its flags; Python still its arguments."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    err = _error(["simulate", str(EXAMPLE), "--t", "1", "--out", str(run)], capsys)
    assert "pass --overwrite to replace" in err and "overwrite=" not in err, err
    (run / "manifest.json").unlink()
    (run / "x").write_text("")
    err = _error(["simulate", str(EXAMPLE), "--t", "1", "--out", str(run), "--overwrite"],
                 capsys)
    assert "even with --overwrite" in err and "overwrite=" not in err, err
    with pytest.raises(OutputError, match=r"overwrite=True"):
        RunDirectory(run)

    tri = _csv(tmp_path / "tri.csv", np.triu(W))
    lengths = _csv(tmp_path / "l.csv", L)
    err = _error(["build", "--sc", str(tri), "--lengths", str(lengths), "--neurons", "300",
                  "-o", str(tmp_path / "b.h5")], capsys)
    assert "dtb build --symmetrize" in err and "symmetrize=" not in err, err
    with pytest.raises(InputError, match=r"symmetrize=True"):
        build(sc=str(tri), lengths=str(lengths))

    bare = _csv(tmp_path / "bare.csv", W, header=False)
    err = _error(["build", "--sc", str(bare), "--lengths", str(lengths), "--neurons", "300",
                  "-o", str(tmp_path / "c.h5")], capsys)
    assert "--labels FILE" in err and "labels=" not in err, err
    with pytest.raises(InputError, match=r"labels= a label list"):
        build(sc=str(bare), lengths=str(lengths))


def test_too_few_neurons_says_the_minimum(tmp_path: Path, capsys):
    """Regression: dtb demo --neurons 2000 failed without saying how many are needed."""
    err = _error(["demo", "--neurons", "2000", "--out", str(tmp_path / "d")], capsys)
    assert "neurons: 2000 -- expected at least 2410 for this brain" in err, err
    assert not (tmp_path / "d").exists()
    build(**demo_inputs(), options=BuildOptions(neurons=2410))  # the minimum works
    with pytest.raises(ConfigError, match="at least 2410"):
        build(**demo_inputs(), options=BuildOptions(neurons=2409))


def test_series_zarr_opens_in_xarray_without_a_warning(tmp_path: Path):
    """Regression: xr.open_zarr(RUN/series.zarr) warned (no consolidated metadata) and
    fell back; the metadata is consolidated now, and equals the arrays' own."""
    out = tmp_path / "run"
    assert main(["simulate", str(EXAMPLE), "--t", "5", "--out", str(out), "-q",
                 "--threads", "1"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(out / "series.zarr")
        assert ds.population_rate.shape == (5, 2)
        cons = zarr.open_consolidated(str(out / "series.zarr"), zarr_format=3)
        plain = zarr.open_group(str(out / "series.zarr"), mode="r", use_consolidated=False)
    assert sorted(cons.array_keys()) == sorted(plain.array_keys())
    for name in plain.array_keys():  # as JSON: a NaN fill value is equal to itself there
        assert (json.dumps(cons[name].metadata.to_dict(), default=str, sort_keys=True)
                == json.dumps(plain[name].metadata.to_dict(), default=str, sort_keys=True))
    np.testing.assert_array_equal(ds.population_rate.values,
                                  xr.open_zarr(out / "series.zarr",
                                               consolidated=False).population_rate.values)


@pytest.fixture(scope="module")
def brain_net():
    spec = build(**demo_inputs(), options=BuildOptions(neurons=3000))
    return parse_network(spec.to_network(name="b"), 0.1)


@pytest.mark.parametrize("flag,tr_ms", [
    ("bold:0.72s", 720.0), ("bold:720ms", 720.0), ("bold:720", 720.0), ("bold:1.5S", 1500.0),
    ("bold:tr=0.8s,baseline=4", 800.0), ("bold:tr=800", 800.0), ("bold:20", 20.0)])
def test_record_bold_takes_a_unit(brain_net, flag: str, tr_ms: float):
    """--record bold:TR: seconds with 's' (as dtb assimilate --tr), ms with 'ms' or bare."""
    spec = resolve_record(None, [flag], brain_net, 0.1)
    assert spec.bold_tr_ms == tr_ms


@pytest.mark.parametrize("flag", ["bold:0.72", "bold:tr=2", "bold:19.9"])
def test_record_bold_refuses_a_bare_number_that_looks_like_seconds(brain_net, flag: str):
    with pytest.raises(ConfigError, match=r"a TR with its unit: .*s \(seconds, as dtb "
                                          r"assimilate --tr\)"):
        resolve_record(None, [flag], brain_net, 0.1)


def test_record_bold_units_in_a_config(brain_net):
    from dtb.model.record_spec import parse_record

    problems: list[str] = []

    def add(path: str, value: object, expected: str) -> None:
        problems.append(f"{path}: {value!r} -- expected {expected}")

    assert parse_record({"bold": "0.72s"}, add).bold_tr_ms == 720.0
    assert parse_record({"bold": {"tr_ms": 720}}, add).bold_tr_ms == 720.0
    assert parse_record({"bold": 720}, add).bold_tr_ms == 720.0
    assert problems == []
    parse_record({"bold": 0.72}, add)
    assert len(problems) == 1 and "0.72s (seconds" in problems[0]
