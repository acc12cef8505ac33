"""dtb report: figures and a summary page of a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
from interrupt import MPIEXEC, run_dtb

from dtb.cli import main


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
