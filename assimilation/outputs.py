"""The run directory of ``dtb assimilate`` (``AssimilationRun``), which holds, when complete:

- ``manifest.json``: written with status ``"running"`` first and replaced atomically, as the
  last act, with ``"complete"`` (or ``"failed"``, or ``"interrupted"`` after a stop signal);
  options, layout, timings, checksums;
- ``assimilation.zarr``: Zarr v3 with dimension names and consolidated metadata
  (``xarray.open_zarr(path)``), the Dataset of ``dataset``, see ``DIMENSIONS`` below (times in
  seconds, ``time_s``; BOLD a fractional signal change; rates in Hz);
- ``metrics.json``: the scores (``dtb.assimilation.evaluation.evaluate``);
- ``figures/``: ``parameters.png``, ``bold.png``, ``fc.png``;
- ``bold_free.tsv`` and its BIDS sidecar ``bold_free.json``: the posterior-mean free run's
  BOLD, the mean over members (tr_free x region), headed by the regions' names (or labels,
  ``dtb.io.bids.region_header``), readable by ``dtb assimilate --bold``;
- with ``--demo``: ``brain.h5`` and ``observed_bold.csv`` (the synthetic data, reusable with
  ``--brain RUN/brain.h5 --bold RUN/observed_bold.csv --tr 0.8``).
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import numba
import numpy as np
import xarray as xr

from dtb.assimilation.evaluation import summary_numbers
from dtb.assimilation.figures import fc_figure
from dtb.assimilation.metrics import fc
from dtb.assimilation.options import Options
from dtb.assimilation.problem import Layout, Problem
from dtb.io.bids import write_bold_tsv
from dtb.io.fileio import TMP_PREFIX, file_entries, sha256_file, write_atomic
from dtb.io.lifecycle import RunLifecycle
from dtb.io.manifest import NotResumable, jsonable, utc_now, versions
from dtb.io.runfiles import config_differences, config_digest, tree_digest

__all__ = ["DIMENSIONS", "MANIFEST_FORMAT", "STORE", "METRICS", "FIGURES", "OBSERVED_CSV",
           "FREE_TSV", "OUTPUTS", "AssimilationRun", "dataset", "region_names"]

STORE = "assimilation.zarr"
METRICS = "metrics.json"
FIGURES = "figures"
OBSERVED_CSV = "observed_bold.csv"
FREE_TSV = "bold_free.tsv"
OUTPUTS = (STORE, METRICS, FIGURES, OBSERVED_CSV, FREE_TSV, "bold_free.json")
MANIFEST_FORMAT = "dtb-assimilation"
#: the top-level entries a run of dtb assimilate may write (the manifest's ``written``)
WRITTEN = ("manifest.json", "brain.h5", *OUTPUTS, "checkpoints")
#: options a resumed run may set anew, or that name files (checked by their SHA-256, or
#: made absolute against the directory the run started in)
_RESUME_FREE = ("resume", "checkpoint_every", "threads", "quiet", "out", "overwrite", "brain",
                "bold", "labels", "atlas", "confounds")

#: Variables of ``assimilation.zarr`` and their dimensions (``tr`` TRs of the observed
#: series, ``tr_free`` TRs of the free run, ``member``, ``unit``, ``parameter``, ``region``).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "theta": ("tr", "member", "unit", "parameter"),        # analysed, after each TR
    "theta_forecast": ("tr", "member", "unit", "parameter"),  # before each analysis
    "prior": ("member", "unit", "parameter"),              # the initial draws
    "posterior_mean": ("unit", "parameter"),               # last assimilated TR
    "posterior_sd": ("unit", "parameter"),
    "bold_observed": ("tr", "region"),                     # after preprocessing
    "bold_forecast": ("tr", "member", "region"),           # one step ahead; free after
    "bold_analysis": ("tr", "member", "region"),
    "rates": ("tr", "member", "unit"),                     # Hz
    "bold_free": ("tr_free", "member", "region"),          # posterior-mean free run
    "innovation": ("tr", "region"),                        # obs - forecast mean
    "normalized_innovation": ("tr",),
    "baseline_hz": ("member", "unit"),                     # zero-drive rates
    "truth": ("unit", "parameter"),                        # twin experiments only
}


# --- outputs ---------------------------------------------------------------------------------

def _tree_digest(path: Path) -> tuple[str, int, int]:
    return tree_digest(path)


def region_names(prob: Problem) -> list[str]:
    """The brain's names of the observed regions (``prob.labels``)."""
    name_of = dict(zip(np.asarray(prob.spec.region_labels).tolist(),
                       (str(n) for n in prob.spec.region_names), strict=True))
    return [name_of.get(int(v), str(int(v))) for v in prob.labels]


def dataset(prob: Problem, res: Any, free: np.ndarray, o: Options) -> Any:
    """The results as an xarray Dataset with the dimensions of ``DIMENSIONS``."""

    T = prob.obs.shape[0]
    na = prob.n_assim
    v: dict[str, Any] = {}

    def put(name: str, x: Any, units: str, what: str) -> None:
        v[name] = xr.Variable(DIMENSIONS[name], np.asarray(x), {"units": units,
                                                                "description": what})

    put("theta", res.theta, "parameter units", "analysed parameters after each TR (frozen "
        "after the assimilated TRs)")
    put("theta_forecast", res.theta_prior, "parameter units",
        "parameters before each analysis (after the random walk)")
    put("prior", prob.theta0, "parameter units", "initial draws")
    put("posterior_mean", res.theta[na - 1].mean(axis=0), "parameter units",
        "ensemble mean after the last assimilated TR")
    put("posterior_sd", res.theta[na - 1].std(axis=0, ddof=1), "parameter units",
        "ensemble SD (ddof 1) after the last assimilated TR")
    put("bold_observed", prob.obs, "fractional signal change", "observations used")
    put("bold_forecast", res.bold_forecast, "fractional signal change",
        "predicted BOLD before each analysis: one step ahead while assimilating, "
        "free-running after")
    put("bold_analysis", res.bold_analysis, "fractional signal change", "after each analysis")
    put("rates", res.rates, "Hz", "mean population rate of each unit over the TR")
    put("bold_free", free, "fractional signal change",
        "free run with the posterior-mean parameters (FC)")
    innov = np.full(T, np.nan)
    innov[:len(res.diagnostics)] = [d["normalized_innovation"] for d in res.diagnostics]
    put("innovation", prob.obs - res.bold_forecast.mean(axis=1), "fractional signal change",
        "observation minus ensemble-mean forecast")
    put("normalized_innovation", innov, "1", "chi-square per observation (NaN: not analysed)")
    put("baseline_hz", res.baseline_hz, "Hz", "each member's rates at nominal parameters "
        "(zero neural drive)")
    if prob.truth is not None:
        put("truth", prob.truth, "parameter units", "the twin experiment's true parameters")
    coords = {
        "tr": xr.Variable("tr", np.arange(T)),
        "time_s": xr.Variable("tr", (np.arange(T) + 1) * o.tr_s, {"units": "s"}),
        "assimilated_tr": xr.Variable("tr", np.arange(T) < na),
        "member": xr.Variable("member", np.arange(o.members)),
        "unit": xr.Variable("unit", np.arange(prob.obs_index.size)),
        "unit_label": xr.Variable("unit", np.asarray(prob.spec.unit_labels, np.int64)),
        "parameter": xr.Variable("parameter", np.array([p.key for p in prob.params], object)),
        "low": xr.Variable("parameter", np.array([p.low for p in prob.params])),
        "high": xr.Variable("parameter", np.array([p.high for p in prob.params])),
        "region": xr.Variable("region", np.asarray(prob.labels, np.int64)),
        "region_name": xr.Variable("region", np.asarray(region_names(prob), object)),
        "assimilated_region": xr.Variable("region", prob.assimilated.copy()),
        "tr_free": xr.Variable("tr_free", np.arange(free.shape[0])),
    }
    return xr.Dataset(v, coords, attrs={"format": "dtb-assimilation", "tr_s": o.tr_s,
                                         "time_units": "s", "method": o.method,
                                         "trs_assimilated": na})


def _figures(prob: Problem, res: Any, free: np.ndarray, fig_dir: Path, o: Options) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    T, R = prob.obs.shape
    t = (np.arange(T) + 1) * o.tr_s
    na = prob.n_assim
    names = []
    # parameters: ensemble mean +- sd for a few units (truth dashed in a twin experiment)
    U = prob.obs_index.size
    show = np.unique(np.linspace(0, U - 1, min(6, U)).astype(int))
    fig, axes = plt.subplots(len(prob.params), 1, figsize=(9, 3.2 * len(prob.params)),
                             squeeze=False)
    for k, p in enumerate(prob.params):
        ax = axes[k, 0]
        for j, uu in enumerate(show):
            mu = res.theta[:, :, uu, k].mean(axis=1)
            sd = res.theta[:, :, uu, k].std(axis=1, ddof=1)
            ax.plot(t, mu, color=f"C{j}", lw=1.2, label=f"unit {uu}")
            ax.fill_between(t, mu - sd, mu + sd, color=f"C{j}", alpha=0.2, lw=0)
            if prob.truth is not None:
                ax.axhline(prob.truth[uu, k], color=f"C{j}", ls="--", lw=0.8)
        if na < T:
            ax.axvspan(t[na - 1], t[-1], color="0.9", zorder=-1)
        ax.set_ylabel(p.key)
        ax.set_xlabel("time (s)")
        ax.legend(ncol=6, fontsize=7)
    axes[0, 0].set_title("Hyperparameters: ensemble mean ± SD"
                         + (" (dashed: truth)" if prob.truth is not None else "")
                         + (" ; grey: frozen, not assimilated" if na < T else ""))
    fig.tight_layout()
    fig.savefig(fig_dir / "parameters.png", dpi=90)
    plt.close(fig)
    names.append("parameters.png")
    # observed vs predicted BOLD, a few regions
    regs = np.unique(np.linspace(0, R - 1, min(4, R)).astype(int))
    fig, axes = plt.subplots(len(regs), 1, figsize=(9, 2.2 * len(regs)), sharex=True,
                             squeeze=False)
    for j, r in enumerate(regs):
        ax = axes[j, 0]
        mu = res.bold_forecast[:, :, r].mean(axis=1) * 100
        sd = res.bold_forecast[:, :, r].std(axis=1, ddof=1) * 100
        ax.plot(t, prob.obs[:, r] * 100, "k.-", lw=0.8, ms=3, label="observed")
        ax.plot(t, mu, color="C3", lw=1.2, label="forecast (ensemble mean)")
        ax.fill_between(t, mu - sd, mu + sd, color="C3", alpha=0.2, lw=0)
        if na < T:
            ax.axvspan(t[na - 1], t[-1], color="0.9", zorder=-1)
        held = "" if prob.assimilated[r] else " (held out)"
        ax.set_ylabel(f"region {int(prob.labels[r])}{held}\n% signal", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title("BOLD: observed and one-step forecast (grey: free-running forecast, "
                         "not assimilated)")
    fig.tight_layout()
    fig.savefig(fig_dir / "bold.png", dpi=90)
    plt.close(fig)
    names.append("bold.png")
    # FC
    fo = fc(prob.obs)
    ff = np.nanmean(np.stack([fc(free[:, i]) for i in range(free.shape[1])]), axis=0)
    fc_figure(plt, fig_dir / "fc.png", ((fo, "observed"), (ff, "free run, posterior mean")), 10)
    names.append("fc.png")
    return names


def _write_csv(path: Path, labels: np.ndarray, data: np.ndarray) -> tuple[str, int]:
    buf = io.StringIO()
    buf.write(",".join(str(int(v)) for v in labels) + "\n")
    np.savetxt(buf, data, delimiter=",", fmt="%.10g")
    return write_atomic(path, buf.getvalue().encode(), "observed BOLD")


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished directory ``tmp`` to ``dest``.  A ``dest`` already there was left by
    this run's own completion, killed before its manifest said complete (a SIGKILL, then
    --resume): this process holds the run directory's lock, so it is set aside and removed
    (os.replace cannot replace a non-empty directory)."""
    if dest.exists():
        old = tmp.with_name(tmp.name + "-old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


class AssimilationRun(RunLifecycle):
    """The run directory of ``dtb assimilate``: the lifecycle of
    ``dtb.io.lifecycle.RunLifecycle`` (checks, lock, overwrite, status transitions, failure
    on an exception: outputs removed, manifest ``failed``) with a manifest of format
    ``dtb-assimilation``: the options, layout, timings, checksums; outputs written through
    temporary names, manifest ``complete`` last."""

    OUTPUTS = OUTPUTS

    @classmethod
    def reopen(cls, path: Path, o: Options | None = None) -> AssimilationRun:
        """The run directory of an interrupted run (``--resume``), manifest read back and
        nothing removed (``resume._read_resume_manifest`` checked it), locked.  With the
        resumed run's options ``o``: raises ``NotResumable`` naming every option that
        differs from the recorded ones (an edited manifest)."""

        f = Path(path) / "manifest.json"
        manifest = json.loads(f.read_text())
        stored = manifest.get("config_sha256")
        if stored is not None and config_digest(manifest.get("options")) != stored:
            raise NotResumable(f"{f}: its \"options\" were edited after the run started "
                               f"(their SHA-256 is no longer the recorded config_sha256 "
                               f"{stored}) -- restore the manifest or start a new run")
        if o is not None:
            def keep(d: Any) -> Any:
                return {k: v for k, v in (d or {}).items() if k not in _RESUME_FREE}

            diff = config_differences(keep(manifest.get("options")),
                                      keep(o.to_record()))
            if diff:
                raise NotResumable(f"{f}: the recorded options differ from those the run's "
                                   f"command gives now ({'; '.join(diff[:5])}) -- a resumed "
                                   "run must continue the run it names; was the manifest "
                                   "edited?")
        return cls.reopened(path, manifest)

    def restart(self, tr: int, checkpoint: str, threads: int | None) -> None:
        """Mark a reopened run ``"running"`` again, appending the restart (time, TR and
        checkpoint directory name) to ``restarts``."""
        self.record_restart({"tr": int(tr), "checkpoint": checkpoint}, threads)

    def interrupt(self, tr: int, checkpoint: str, reason: str) -> None:
        """Mark the run ``"interrupted"``: resumable from ``checkpoint`` (a directory name
        under ``checkpoints/``) at TR ``tr``; ``reason`` the signal's name."""
        self.record_interrupt({"tr": int(tr), "checkpoint": checkpoint, "reason": reason})

    def begin(self, o: Options, prob: Problem, lay: Layout) -> None:
        """Write the manifest ``running`` (an earlier run's files, brain.h5 too, set aside
        first); with ``--demo`` the demo's brain is saved in the run directory."""
        self.set_aside()
        opts = o.to_record()
        manifest = {
            "format": MANIFEST_FORMAT, "format_version": 1, "status": "running",
            "error": None, "dtb_version": versions()["dtb"], "versions": versions(),
            "command": list(o.extra.get("command") or ["dtb", *sys.argv[1:]]),
            "cwd": os.getcwd(), "hostname": socket.gethostname(),
            "platform": platform.platform(), "source": prob.source, "options": opts,
            "config_sha256": config_digest(opts), "written": sorted(WRITTEN),
            "seed": o.seed, "ranks": lay.ranks,
            "layout": {"members": o.members, "ranks_per_member": lay.ranks_per_member,
                       "member_communicators": lay.groups,
                       "members_per_communicator": o.members // lay.groups},
            "threads": o.threads or numba.get_num_threads(),
            "neurons_per_member": prob.net.n_neurons, "units": int(prob.obs_index.size),
            "start_time": utc_now(), "end_time": None, "timings": None, "outputs": {}}
        if o.demo:
            brain = self.path / "brain.h5"
            prob.spec.save(brain)
            manifest["source"]["brain"] = str(brain.resolve())
            manifest["source"]["brain_sha256"] = sha256_file(brain)
        self.record_start(manifest)

    def complete(self, o: Options, prob: Problem, res: Any, free: np.ndarray,
                 metrics: dict[str, Any], lay: Layout) -> dict[str, Any]:
        """Write the outputs (through temporary names), then the manifest ``complete``;
        returns the manifest."""

        self.commit()
        outputs: dict[str, Any] = {}
        ds = dataset(prob, res, free, o)
        tmp = self.path / f"{TMP_PREFIX}{os.getpid()}-{STORE}"
        shutil.rmtree(tmp, ignore_errors=True)
        with warnings.catch_warnings():
            # consolidated metadata, as series.zarr: xarray.open_zarr opens the store without
            # a warning (zarr-python's extension of Zarr v3, which it says in a warning)
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently "
                                    "not part")
            ds.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=True)
        _replace_dir(tmp, self.path / STORE)
        digest, n, size = _tree_digest(self.path / STORE)
        outputs[STORE] = {"path": STORE, "format": "zarr-v3", "sha256_tree": digest,
                          "files": n, "bytes": size,
                          "variables": {k: list(DIMENSIONS[k]) for k in ds.data_vars}}
        text = json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n"
        d, s = write_atomic(self.path / METRICS, text.encode(), "metrics")
        outputs[METRICS] = {"path": METRICS, "sha256": d, "bytes": s}
        if o.demo:
            d, s = _write_csv(self.path / OBSERVED_CSV, prob.labels, prob.obs)
            outputs[OBSERVED_CSV] = {"path": OBSERVED_CSV, "sha256": d, "bytes": s,
                                     "tr_s": o.tr_s}

        for name, entry in write_bold_tsv(
                self.path / FREE_TSV, free.mean(axis=1), prob.labels, region_names(prob),
                o.tr_s, {"Description": "BOLD of the free run with the posterior-mean "
                                        "parameters, the mean over members, written by dtb "
                                        "assimilate"}).items():
            outputs[name] = entry
        tmpf = self.path / f"{TMP_PREFIX}{os.getpid()}-{FIGURES}"
        shutil.rmtree(tmpf, ignore_errors=True)
        names = _figures(prob, res, free, tmpf, o)
        _replace_dir(tmpf, self.path / FIGURES)

        outputs[FIGURES] = file_entries(self.path, FIGURES, names)
        return self.record_complete({"outputs": outputs, "timings": metrics["timings"],
                                     "summary": summary_numbers(metrics)})
