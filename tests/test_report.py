"""dtb report: figures and a summary page of a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
from interrupt import MPIEXEC, run_dtb

from dtb.cli.main import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rep") / "run"
    assert main(["demo", "--neurons", "3000", "--t", "600", "--out", str(out), "--quiet",
                 "--record", "bold:100"]) == 0
    return out


def test_report_writes_figures_and_page(demo_run: Path, capsys: pytest.CaptureFixture[str]):
    capsys.readouterr()
    assert main(["report", str(demo_run)]) == 0
    rep = demo_run / "report"
    assert capsys.readouterr().out.strip() == str(rep / "index.md")
    for name in ("raster.png", "rates.png", "bold.png", "fc.png"):
        img = matplotlib.image.imread(rep / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.01  # something is drawn
    page = (rep / "index.md").read_text()
    m = json.loads((demo_run / "manifest.json").read_text())
    assert "**complete**" in page and f"{m['counts']['spikes']:,}" in page
    for pop, rate in m["rates_hz"].items():
        assert f"| {pop} |" in page and f"| {rate:.2f} |" in page
    for name in ("raster.png", "rates.png", "bold.png", "fc.png"):
        assert f"]({name})" in page


def test_report_of_a_non_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Bad input: exit 2, the file named, and nothing written (no report/ in it)."""
    for path in (tmp_path, tmp_path / "missing"):
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dtb: error: {path / 'manifest.json'}: 'No such file or "
                              "directory' -- expected the manifest of a run directory"), err
        assert "status" not in err  # no "run directory ... (status: unknown)" line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ranks,t_ms", [
    (1, "100"), (1, "0.1"), pytest.param(2, "200", marks=pytest.mark.mpi),
    pytest.param(2, "0.5", marks=pytest.mark.mpi)])
def test_report_of_short_runs(tmp_path: Path, ranks: int, t_ms: str):
    """Regression (issue 15, defect 1): dtb report crashed (IndexError in cv_isi_grouped)
    on the microcircuit at scale 0.02 run for 100 ms, and on 200 ms runs on 1 and 2 ranks,
    whenever the last sampled neuron of a population never fired.  Any length, 1 and 2
    ranks: the report is written and its page has a row per population."""
    if ranks > 1 and MPIEXEC is None:
        pytest.skip("no mpiexec (pip install mpich)")
    out = tmp_path / "mc"
    r = run_dtb("simulate", "--model", "microcircuit", "--scale", "0.02", "--t", t_ms,
                "--out", str(out), "--quiet", "--threads", "1", ranks=ranks)
    assert r.returncode == 0, r.stderr
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "index.md").read_text()
    m = json.loads((out / "manifest.json").read_text())
    assert m["ranks"] == ranks
    for pop in m["rates_hz"]:
        assert f"| {pop} |" in page


def test_report_of_a_run_shorter_than_a_tr(tmp_path: Path):
    """A run with BOLD recorded but shorter than one or two TRs: no BOLD/FC figure (the
    BOLD figure indexed an empty series, or warned about a singular axis) and the page
    says why."""
    for t_ms, n_bold in (("50", 0), ("150", 1)):
        out = tmp_path / f"run{t_ms}"
        assert main(["demo", "--neurons", "3000", "--t", t_ms, "--out", str(out), "--quiet",
                     "--threads", "1", "--record", "bold:100"]) == 0
        rep = out / "report"
        assert not (rep / "bold.png").exists() and not (rep / "fc.png").exists()
        assert f"BOLD: {n_bold} sample(s) in this run" in (rep / "index.md").read_text()


# --- notes on BOLD: absent, in its start-up transient, too short for FC (issue 15) ----------

def _bold_ds(n: int, tr_ms: float, model: str = "friston2000"):
    import numpy as np
    import xarray as xr

    t = tr_ms * (1 + np.arange(n))
    data = np.random.default_rng(0).standard_normal((n, 4))
    return xr.Dataset({"bold": xr.DataArray(data, dims=("time_bold", "unit"),
                                            coords={"time_bold": t},
                                            attrs={"tr_ms": tr_ms, "model": model})})


def test_bold_transient_is_the_slowest_hemodynamic_mode_decaying_to_5_percent():
    """Independently of the eigen-solver: the linearised model is block triangular, its
    rates the roots of l^2 + kappa l + gamma (flow; underdamped for these sets: real part
    -kappa/2), -1/(alpha tau) (volume) and -1/tau (deoxyhaemoglobin)."""
    import math

    from dtb.cli.report import NETWORK_TRANSIENT_MS, bold_transient_ms
    from dtb.model.hemodynamics import PARAMETER_SETS

    for name, p in PARAMETER_SETS.items():
        assert p.kappa ** 2 < 4 * p.gamma
        slowest = min(p.kappa / 2, 1 / (p.alpha * p.tau), 1 / p.tau)
        want = NETWORK_TRANSIENT_MS + 1e3 * math.log(20) / slowest
        assert bold_transient_ms(name) == pytest.approx(want, rel=1e-9), name
    assert bold_transient_ms() == pytest.approx(5093.2, abs=0.1)


def test_report_notes_say_why_bold_or_fc_is_absent_or_unreliable(demo_run: Path):
    import xarray as xr

    from dtb.cli.report import bold_notes

    # the demo fixture: 6 samples of 0.1 s, all inside the 5.1 s transient
    page = (demo_run / "report" / "index.md").read_text()
    assert "**BOLD still in its start-up transient**: all 6 samples lie in the first " \
           "5.1 s" in page
    assert "**Too short for FC**: 6 BOLD samples" in page
    # 12 samples of 0.8 s: the first 6 (to 4.8 s) are the transient, FC from the other 6
    notes, first = bold_notes({}, _bold_ds(12, 800.0), 9600.0)
    assert first == 6
    assert notes[0].startswith("The first 6 of 12 BOLD samples (up to 5.1 s) are the "
                               "start-up transient")
    assert "**Too short for FC**: 6 BOLD samples (TR 800 ms) after the transient" in notes[1]
    # long enough for FC: only the transient is mentioned
    notes, first = bold_notes({}, _bold_ds(100, 800.0), 80000.0)
    assert first == 6 and len(notes) == 1 and "FC below is computed without them" in notes[0]
    # no BOLD: why, and how to get it
    notes, _ = bold_notes({"source": {"kind": "brain"}}, xr.Dataset(), 1000.0)
    assert "No BOLD recorded, so no BOLD or FC figures: record it with `--record " \
           "bold:720`" in notes[0]
    notes, _ = bold_notes({"source": {"kind": "model"}}, xr.Dataset(), 1000.0)
    assert "this network has no units" in notes[0]
    notes, _ = bold_notes({}, _bold_ds(0, 720.0), 500.0)
    assert "shorter than one TR: no samples" in notes[0]


def test_demo_records_bold_and_writes_the_region_table(tmp_path: Path):
    out = tmp_path / "demo"
    assert main(["demo", "--neurons", "3000", "--t", "800", "--threads", "1", "--out",
                 str(out), "--quiet"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["record"]["bold"]["tr_ms"] == 720
    assert (out / "bold.tsv").read_text().count("\n") == 2          # header + 1 TR
    page = (out / "report" / "index.md").read_text()
    assert "still in its start-up transient" in page and "no FC figure" in page
    assert not (out / "report" / "fc.png").exists()
