"""``dtb report RUN_DIR``: figures and a summary page of a finished run.

Writes ``RUN_DIR/report/``: ``raster.png`` (a sample of neurons per population),
``rates.png`` (population rates), ``bold.png`` (BOLD per unit, when recorded), ``fc.png``
(functional connectivity of the BOLD signal) and ``index.md``, a short page with the key
numbers (status, sizes, timings, rates, CV of inter-spike intervals, spike-count
correlation) linking the figures, and notes: why BOLD or FC figures are absent, and when a
series is still in its start-up transient or too short for FC (``bold_notes``).

The BOLD start-up transient: the run starts the hemodynamic model at rest and the network
from its initial state, so the first seconds of BOLD are the response to the start of the
simulation.  Its length is taken as the network's transient (``NETWORK_TRANSIENT_MS``) plus
the time in which the hemodynamic model's slowest mode decays to 5 % (``ln 20 / |Re
lambda|``, lambda the eigenvalue of the model linearised at rest with the smallest decay
rate: 4.8 s for friston2000, 9.2 s for friston2003, 9.4 s for stephan2007).  FC is computed
over the samples after it, and called too short below ``FC_MIN_SAMPLES`` samples (the
sampling SD of a correlation of N independent samples is about 1/sqrt(N): 0.22 at 20).

Everything is read lazily through dtb.analysis, so a report of a large run reads only the
sampled neurons' spikes and the dense series.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dtb.analysis import (
    count_correlation,
    cv_isi_grouped,
    functional_connectivity,
    mean_rates,
    open_run,
)
from dtb.errors import OutputError, UsageError
from dtb.io.fileio import TMP_PREFIX, write_atomic
from dtb.io.runfiles import (
    LEGACY_REPORT_FILES,
    REPORT_FORMAT,
    REPORT_RECORD,
    RefusedOutput,
    report_files,
)
from dtb.io.runlock import RunDirectoryBusy, RunLock, busy_message
from dtb.model.hemodynamics import linear_system

RASTER_NEURONS = 50   # neurons per population in the raster
STAT_NEURONS = 200    # neurons per population for the CV of ISIs
PAIRS = 100           # pairs per population for the count correlation
NETWORK_TRANSIENT_MS = 300.0   # the network's own start-up transient (as dtb assimilate's)
FC_MIN_SAMPLES = 20   # fewer BOLD samples after the transient: FC called too short


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dtb report``."""
    r = subparsers.add_parser(
        "report", help="figures and a summary page of a run directory",
        description="Write RUN_DIR/report: raster.png, rates.png, bold.png, fc.png and "
                    "index.md with the key numbers of the run.")
    # dest "run", not "run_dir": that name means the directory a command writes (dtb.cli.main)
    r.add_argument("run", metavar="RUN_DIR", help="a run directory (dtb simulate/demo)")
    r.add_argument("--out", metavar="DIR", help="where to write (default RUN_DIR/report)")
    r.add_argument("--t-max", type=float, metavar="MS",
                   help="show at most this much model time in the raster (default 1000)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace files in the output directory that have the names of the "
                        "report's files but were not written by dtb report (other files "
                        "there are never touched)")
    r.add_argument("--verify", action="store_true",
                   help="check the SHA-256 of every output the run's manifest lists "
                        "(default: sizes always, checksums when the outputs are small)")
    return r


def run_report(args: argparse.Namespace) -> int:
    """``dtb report``: returns the exit code (0)."""
    t_max = 1000.0 if args.t_max is None else args.t_max
    out = make_report(args.run, args.out, t_max=t_max, overwrite=args.overwrite,
                      verify=True if args.verify else None)
    print(out / "index.md")
    return 0


def make_report(run_dir: str | Path, out: str | Path | None = None,
                t_max: float = 1000.0, overwrite: bool = False,
                verify: bool | None = None) -> Path:
    """Write the report of ``run_dir`` into ``out`` (default run_dir/report); returns it.

    Everything is checked and drawn first, into a temporary directory inside ``out``; only
    then are the files moved into place.  Files an earlier ``dtb report`` wrote there (its
    record ``.dtb-report.json``) are replaced; any other file with the name of one the
    report writes is replaced only with ``overwrite``; other files are never touched.  The
    directory written is locked (dtb.io.runlock) while the report is made: ``run_dir`` itself
    for the default ``out``, else ``out``.  ``verify``: check the run's outputs against
    their SHA-256 (None: when small; sizes are always checked).

    Raises InputError for a directory that is not a run or whose files differ from its
    manifest (before anything is written), ``RefusedOutput`` for user files in the way,
    ``RunDirectoryBusy`` while another dtb process writes the directory, OutputError for a
    report that cannot be written."""

    import matplotlib

    matplotlib.use("Agg")

    if not (isinstance(t_max, (int, float)) and math.isfinite(t_max) and t_max > 0):
        raise UsageError(f"--t-max: {t_max!r} -- expected a model time in ms > 0")
    run_dir = Path(run_dir)
    inside = out is None
    out = Path(out) if out is not None else run_dir / "report"
    busy = busy_message(run_dir)
    if busy is not None:
        raise RunDirectoryBusy(busy + " -- report it once the run has ended")
    run = open_run(run_dir, verify=verify)  # first: no run, or a damaged one: nothing written
    lock: RunLock | None = None
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{out}: cannot write the report: {e.strerror or e}") from e
        lock = RunLock(run_dir if inside else out)
        lock.acquire()
        _write_report(run, out, t_max, overwrite, legacy_ok=inside)
    finally:
        run.close()
        if lock is not None:
            lock.release()
    return out


def _write_report(run: Any, out: Path, t_max: float, overwrite: bool, legacy_ok: bool) -> None:
    """Draw everything into a temporary directory in ``out``, check the names against what
    is there, then move the files in and record them."""

    tmp = out / f"{TMP_PREFIX}{os.getpid()}-report"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        names = _draw(run, tmp, t_max)
        mine = report_files(out)
        if mine is None:
            mine = set(LEGACY_REPORT_FILES) if legacy_ok else set()
        theirs = [n for n in names if (out / n).exists() and n not in mine]
        if theirs and not overwrite:
            raise RefusedOutput(f"{out}: holds {', '.join(theirs)}, not written by dtb report "
                                "-- pass --overwrite to replace them, or choose another --out "
                                "(nothing was changed)")
        for n in theirs:
            if (out / n).is_dir() and not (out / n).is_symlink():
                raise RefusedOutput(f"{out / n}: a directory where the report writes a file "
                                    "-- move it away or choose another --out")
        for n in names:
            os.replace(tmp / n, out / n)
        for n in sorted(mine - set(names)):  # an earlier report's files not drawn this time
            q = out / n
            if q.is_file() or q.is_symlink():
                q.unlink(missing_ok=True)
        record = {"format": REPORT_FORMAT, "format_version": 1, "run": str(run.path),
                  "files": sorted(names)}
        write_atomic(out / REPORT_RECORD, (json.dumps(record, indent=1) + "\n").encode(),
                     "report record")
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"{out}: cannot write the report: {e.strerror or e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _draw(run: Any, out: Path, t_max: float) -> list[str]:
    """The figures and index.md of ``run`` into directory ``out``; returns their names."""
    figs: list[tuple[str, str]] = []
    numbers = _numbers(run)
    if run.spikes is not None:
        _raster(run, out / "raster.png", t_max)
        figs.append(("Raster (a sample of neurons per population)", "raster.png"))
    ds = run.dataset
    if "population_rate" in ds:
        _rates(ds, out / "rates.png")
        figs.append(("Population rates", "rates.png"))
    notes, first = bold_notes(run.manifest, ds, run.t_stop)
    numbers["notes"].extend(notes)
    if "bold" in ds:
        n_bold = ds.sizes["time_bold"]
        if n_bold >= 2:  # a run shorter than a TR or two has no series to draw
            _bold(ds, out / "bold.png")
            figs.append(("BOLD per unit", "bold.png"))
        if n_bold - first >= 3:  # FC without the start-up transient
            fc = _fc(ds.isel(time_bold=slice(first, None)), out / "fc.png")
            figs.append(("Functional connectivity of BOLD", "fc.png"))
            numbers["fc_mean_offdiag"] = fc
        elif n_bold < 3:
            numbers["notes"].append(
                f"BOLD: {n_bold} sample(s) in this run -- no "
                f"{'functional connectivity' if n_bold == 2 else 'BOLD or FC'} figure "
                "(a figure needs 2 samples, FC 3; record a longer run)")
    _page(run, numbers, figs, out / "index.md")
    return [f for _, f in figs] + ["index.md"]


def bold_transient_ms(model: str = "friston2000") -> float:
    """The BOLD start-up transient in ms (see the module docstring)."""

    A = linear_system(model)[0]
    slowest = float(np.min(np.abs(np.linalg.eigvals(A).real)))
    return NETWORK_TRANSIENT_MS + 1e3 * np.log(20.0) / slowest


def bold_notes(manifest: dict[str, Any], ds: Any, t_stop_ms: float) -> tuple[list[str], int]:
    """Notes for the report on the run's BOLD: why it is absent, whether it is still in its
    start-up transient, whether it is long enough for FC.  Returns ``(notes, first)``:
    ``first`` the index of the first BOLD sample after the transient (0 when every sample
    is in it, so that what there is can still be shown)."""
    notes: list[str] = []
    if "bold" not in ds:
        kind = (manifest.get("source") or {}).get("kind")
        if kind == "brain" or "unit_rate" in ds:
            notes.append("No BOLD recorded, so no BOLD or FC figures: record it with "
                         "`--record bold:720` (TR in ms) or `record: {bold: {tr_ms: 720}}`, "
                         "and run for a minute or more of model time.")
        else:
            notes.append("No BOLD: this network has no units (regions or voxels) to compute "
                         "it for, so no BOLD or FC figures (build a brain with `dtb build`).")
        return notes, 0
    b = ds.bold
    n = int(b.sizes["time_bold"])
    tr = float(b.attrs.get("tr_ms", 0.0)) or (t_stop_ms / max(n, 1))
    transient = bold_transient_ms(str(b.attrs.get("model", "friston2000")))
    times = np.asarray(b.time_bold.values, float)
    first = int(np.searchsorted(times, transient, side="right"))
    if n == 0:
        notes.append(f"BOLD was recorded with a TR of {tr:g} ms, but the run ({t_stop_ms:g} "
                     "ms) is shorter than one TR: no samples, so no BOLD or FC figures.")
        return notes, 0
    if first >= n:
        notes.append(f"**BOLD still in its start-up transient**: all {n} samples lie in the "
                     f"first {transient / 1e3:.1f} s, the hemodynamic response to the start "
                     f"of the simulation; they say nothing about ongoing activity. Run for a "
                     f"minute or more of model time (`--t 60000`).")
        first = 0
    elif first > 0:
        notes.append(f"The first {first} of {n} BOLD samples (up to {transient / 1e3:.1f} s) "
                     "are the start-up transient; FC below is computed without them.")
    used = n - first
    if used < 3:
        notes.append(f"**Too short for FC**: {used} BOLD sample(s) (TR {tr:g} ms); "
                     "functional connectivity needs at least 3, and many more to mean "
                     "anything, so no FC figure.")
    elif used < FC_MIN_SAMPLES:
        notes.append(f"**Too short for FC**: {used} BOLD samples (TR {tr:g} ms) after the "
                     f"transient; a correlation over N samples has a sampling SD of about "
                     f"1/sqrt(N) ({1 / np.sqrt(used):.2f} here), so the FC figure is mostly "
                     f"noise. Aim for {FC_MIN_SAMPLES} samples at the very least (minutes of "
                     "model time).")
    return notes, first


def _numbers(run: Any) -> dict[str, Any]:
    n: dict[str, Any] = {"rates": mean_rates(run), "cv": {}, "corr": {}, "notes": []}
    if run.spikes is None:
        return n
    for p in run.spikes.populations:
        if run.spikes.sorting(p) != "by_id" or not run.sizes.get(p):
            continue
        ids = np.unique(np.linspace(0, run.sizes[p] - 1, min(STAT_NEURONS, run.sizes[p]))
                        .astype(np.int64))
        trains = run.spikes.trains(p, ids)
        t = np.concatenate(trains) if trains else np.zeros(0)
        off = np.r_[0, np.cumsum([len(x) for x in trains])]
        _, cv = cv_isi_grouped(ids, off, t)
        n["cv"][p] = float(np.nanmean(cv)) if len(cv) else float("nan")
        if len(ids) >= 2 and run.t_stop >= 100:
            rho = count_correlation(run.spikes, p, bin_ms=10.0, t_start=0.0,
                                    t_stop=run.t_stop, n_pairs=PAIRS, node_ids=ids)
            n["corr"][p] = float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")
    return n


def _raster(run: Any, path: Path, t_max: float) -> None:
    import matplotlib.pyplot as plt

    pops = run.spikes.populations
    fig, ax = plt.subplots(figsize=(9, 5))
    y0 = 0
    ticks = []
    for k, p in enumerate(pops):
        size = run.sizes.get(p, 0)
        ids = np.unique(np.linspace(0, max(size - 1, 0), min(RASTER_NEURONS, size))
                        .astype(np.int64)) if size else np.zeros(0, np.int64)
        for j, tr in enumerate(run.spikes.trains(p, ids)):
            tr = tr[tr <= t_max]
            ax.plot(tr, np.full(len(tr), y0 + j), "|", ms=3, mew=1.0, color=f"C{k % 10}")
        ticks.append((y0 + len(ids) / 2, p))
        y0 += len(ids) + 5
    ax.set_yticks([t for t, _ in ticks], [p for _, p in ticks])
    ax.set_xlabel("time (ms)")
    ax.set_xlim(0, min(t_max, run.t_stop))
    ax.set_title(f"Spike raster, {RASTER_NEURONS} neurons per population")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rates(ds: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    r = ds.population_rate
    fig, ax = plt.subplots(figsize=(9, 4))
    step = max(1, r.sizes["time"] // 2000)  # at most ~2000 points per curve
    t = r.time.values[::step]
    for p in r.population.values:
        ax.plot(t, r.sel(population=p).values[::step], lw=0.8, label=str(p))
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    ax.legend(ncol=4, fontsize=8)
    ax.set_title(f"Population rates ({r.attrs.get('bin_ms', '?')} ms bins)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bold(ds: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    b = ds.bold
    fig, ax = plt.subplots(figsize=(9, 4))
    t = np.asarray(b.time_bold.values, float)
    tr = float(b.attrs.get("tr_ms", 0.0)) or (t[1] - t[0] if t.size > 1 else t[0])
    # each sample is stamped at the end of its TR: it covers (t - TR, t]
    img = ax.imshow(100 * b.values.T, aspect="auto", interpolation="nearest", cmap="RdBu_r",
                    extent=(float(t[0] - tr), float(t[-1]), b.sizes["unit"], 0))
    fig.colorbar(img, ax=ax, label="BOLD (% signal change)")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("unit")
    ax.set_title("BOLD per unit")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fc(ds: Any, path: Path) -> float:
    import matplotlib.pyplot as plt

    fc = functional_connectivity(ds.bold).values
    fig, ax = plt.subplots(figsize=(5.5, 5))
    img = ax.imshow(fc, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
    fig.colorbar(img, ax=ax, label="Pearson r")
    ax.set_title("Functional connectivity (BOLD)")
    ax.set_xlabel("unit")
    ax.set_ylabel("unit")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    off = fc[~np.eye(len(fc), dtype=bool)]
    return float(np.nanmean(off)) if np.isfinite(off).any() else float("nan")


def _page(run: Any, n: dict[str, Any], figs: list[tuple[str, str]], path: Path) -> None:
    m = run.manifest
    c, t = m.get("counts") or {}, m.get("timings") or {}
    src = m.get("source") or {}
    lines = [f"# dtb run report: {run.path.name}", "",
             f"- status: **{m.get('status')}**, dtb {m.get('dtb_version')}, "
             f"{m.get('ranks')} rank(s), backend {m.get('backend')}, seed {m.get('seed')}",
             f"- source: {src.get('kind')} {src.get('model') or src.get('path') or ''}",
             f"- neurons {c.get('neurons', 0):,}, synapses {c.get('synapses', 0):,}, "
             f"spikes {c.get('spikes', 0):,}",
             f"- model time {t.get('model_time_ms', 0):g} ms, build {t.get('build_s', 0):.2f} s,"
             f" simulate {t.get('simulate_s', 0):.2f} s (real-time factor "
             f"{t.get('rtf') or float('nan'):.3g})", ""]
    lines += [f"- {note}" for note in n["notes"]] + ([""] if n["notes"] else [])
    if "fc_mean_offdiag" in n:
        lines += [f"- mean off-diagonal BOLD functional connectivity: "
                  f"{n['fc_mean_offdiag']:.3f}", ""]
    if n.get("notes"):
        lines += ["## Notes", ""] + [f"- {x}" for x in n["notes"]] + [""]
    lines += ["| population | neurons | rate (Hz) | CV of ISI | count corr. (10 ms) |",
              "|---|---:|---:|---:|---:|"]
    for p, r in n["rates"].items():
        lines.append(f"| {p} | {run.sizes.get(p, 0):,} | {r:.2f} | "
                     f"{n['cv'].get(p, float('nan')):.2f} | "
                     f"{n['corr'].get(p, float('nan')):.3f} |")
    lines.append("")
    for title, f in figs:
        lines += [f"## {title}", "", f"![{title}]({f})", ""]
    path.write_text("\n".join(lines))
