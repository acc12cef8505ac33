"""dtb report: figures and a summary page of a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest

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
