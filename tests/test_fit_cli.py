"""``dtb fit`` end to end: a CI-sized twin experiment through the command, the run directory
it writes, bad input refused before anything is simulated, and --resume after a stop giving
exactly the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from dtb.assimilation import summary as S
from dtb.assimilation.fit import FitParameter, ForwardConfig, simulate_bold
from dtb.assimilation.fit_options import FitOptions
from dtb.brain.spec import BrainSpec
from dtb.cli.main import main
from dtb.errors import ConfigError

R = 6
TRUTH = 2.0


def _write(path: Path, head: list[str], rows: np.ndarray) -> None:
    path.write_text(",".join(head) + "\n" + "\n".join(",".join(repr(float(v)) for v in r)
                                                     for r in rows) + "\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A 6-region, 600-neuron brain (dtb build) and 400 TRs (50 ms) of its region rates at
    coupling 2 with its own network realisation, headed by the region names."""
    from dtb.brain.spec import BrainSpec

    d = tmp_path_factory.mktemp("fitcli")
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, (R, R))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    w[w < 0.4] = 0
    ln = rng.uniform(20, 80, (R, R))
    ln = (ln + ln.T) / 2
    np.fill_diagonal(ln, 0)
    labels = [str(i) for i in range(1, R + 1)]
    _write(d / "sc.csv", labels, w)
    _write(d / "len.csv", labels, ln)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["build", "--sc", str(d / "sc.csv"), "--lengths", str(d / "len.csv"),
                     "--neurons", "600", "-o", str(d / "brain.h5"), "-q"]) == 0
    spec = BrainSpec.load(d / "brain.h5")
    cfg = ForwardConfig(tr_s=0.05, n_tr=400, spinup_s=0.0, substeps=1, observable="rates")
    x = simulate_bold(spec, [FitParameter("coupling", 0.25, 8.0)], [TRUTH], 424242, cfg)
    names = [str(n) for n in spec.region_names]
    _write(d / "bold.csv", names, x)
    # a "group" FC: the fit TRs' own FC, columns in reverse order (matched by name)
    g = np.corrcoef(x[:200].T)[::-1, ::-1]
    _write(d / "group.csv", names[::-1], g)
    return d


def _args(d: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--brain", str(d / "brain.h5"), "--bold", str(d / "bold.csv"),
            "--tr", "0.05", "--fit-trs", "0:200", "--test-trs", "200:400",
            "--param", "coupling=0.25:8@4", "--truth", f"coupling={TRUTH}",
            "--members", "6", "--iterations", "2", "--noise-runs", "4",
            "--fc-components", "3", "--fit-mean", "--detrend", "none",
            "--observable", "rates", "--spinup-s", "0", "--substeps", "1",
            "--window", "20", "--step", "5", "--group-fc", str(d / "group.csv"),
            "--out", str(out), "-q", *extra]


@pytest.fixture(scope="module")
def whole(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole"
    assert main(_args(inputs, out)) == 0
    return out


def test_twin_through_the_command_moves_the_coupling_to_the_truth(inputs, whole):
    """Prior centred at 4 (SD 1 on the logit scale), truth 2: the posterior mean must
    close most of the gap (measured: 4 -> 2.44) and the run directory hold what the
    manifest lists, scores beside their baselines, computed the documented way."""
    m = json.loads((whole / "metrics.json").read_text())
    tw = m["twin"]["coupling"]
    assert abs(tw["posterior_mean"] - TRUTH) < 0.5 * abs(4.0 - TRUTH)
    assert tw["posterior_sd_logit"] < tw["prior_sd_logit"]
    assert m["fit"]["statistics"]["m"] == 3 + R          # 3 FC components, 6 log means
    assert len(m["fit"]["misfit_median"]) == 2
    man = json.loads((whole / "manifest.json").read_text())
    assert man["status"] == "complete" and man["format"] == "dtb-fit"
    assert not (whole / "checkpoints").exists()
    for name in ("fit.h5", "metrics.json", "bold_free.tsv", "bold_free.json"):
        assert name in man["outputs"] and (whole / name).is_file()
    assert set(man["outputs"]["figures"]) == {"fc.png", "fcd.png", "parameters.png"}
    with h5py.File(whole / "fit.h5") as h:
        ens = h["ensemble"][()]
        assert ens.shape == (3, 6, 1)                     # prior, after 1, after 2
        assert np.array_equal(ens[-1], h["posterior"][()])
        obs_test = h["bold/observed_test"][()]
        fitted = h["bold/fitted"][()]
        assert h["parameters/name"][()].astype(str).tolist() == ["coupling"]
    # the held-out scores, recomputed from the stored series (an independent path)
    data = np.loadtxt(inputs / "bold.csv", delimiter=",", skiprows=1)
    assert np.allclose(obs_test, data[200:400])
    b = m["heldout"]["baselines"]
    assert m["heldout"]["fitted"]["fc_r"] == pytest.approx(
        np.corrcoef(S.upper(np.corrcoef(fitted.T)), S.upper(np.corrcoef(obs_test.T)))[0, 1])
    assert b["split_half"]["fc_r"] == pytest.approx(
        np.corrcoef(S.upper(np.corrcoef(data[:200].T)), S.upper(np.corrcoef(obs_test.T)))[0, 1])
    # the group FC given was the fit TRs' FC: it scores what the split half does
    assert b["group_fc"]["fc_r"] == pytest.approx(b["split_half"]["fc_r"], abs=1e-9)
    sc = np.loadtxt(inputs / "sc.csv", delimiter=",", skiprows=1)
    logsc = np.log(np.where(sc > 0, sc, sc[sc > 0].min()))
    assert b["log_sc"]["fc_r"] == pytest.approx(
        np.corrcoef(S.upper(logsc), S.upper(np.corrcoef(obs_test.T)))[0, 1])
    assert 0 <= m["heldout"]["fitted"]["fcd_ks"] <= 1
    # the free run's table is BOLD dtb assimilate can read
    from dtb.assimilation.observations import read_bold

    assert np.allclose(read_bold(whole / "bold_free.tsv").data, fitted, atol=1e-6)
    # the brain at the posterior mean, for dtb simulate / assimilate --brain
    from dtb.brain.spec import BrainSpec

    assert "brain_fitted.h5" in man["outputs"]
    given, fitted_brain = BrainSpec.load(inputs / "brain.h5"), BrainSpec.load(
        whole / "brain_fitted.h5")
    g = m["fit"]["posterior_mean"]["coupling"]
    for a, b in zip(given.rules, fitted_brain.rules, strict=True):
        assert b.weight == pytest.approx(a.weight * (g if a.kind == "long_range" else 1.0))
    assert fitted_brain.provenance[-1]["parameters"] == {"coupling": pytest.approx(g)}


def test_resume_after_a_stop_gives_the_uninterrupted_result(inputs, whole, tmp_path):
    """Stopped after iteration 1 (exit 75), resumed: the uninterrupted run's result."""
    out = tmp_path / "split"
    assert main(_args(inputs, out, "--stop-after", "1")) == 75
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "interrupted" and man["interrupted"]["iteration"] == 1
    assert (out / "checkpoints" / "fit.npz").is_file() and not (out / "fit.h5").exists()
    # --resume rebuilds the run from its recorded, resolved options, not by parsing the
    # command line it was started with: a garbled argv does not matter
    man["argv"] = ["--no-such-flag", "x"]
    (out / "manifest.json").write_text(json.dumps(man))
    assert main(["fit", "--resume", str(out), "-q"]) == 0
    with h5py.File(whole / "fit.h5") as a, h5py.File(out / "fit.h5") as b:
        for k in ("ensemble", "posterior", "misfit", "Gamma", "y", "bold/fitted",
                  "bold/unfitted"):
            assert np.array_equal(a[k][()], b[k][()]), k

    def scores(p: Path) -> dict:
        m = json.loads((p / "metrics.json").read_text())
        m.pop("timings")
        return m

    assert scores(out) == scores(whole)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["restarts"]) == 1
    # a complete run is not resumed again
    assert main(["fit", "--resume", str(out)]) == 2


MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
    shutil.which("mpiexec")


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
@pytest.mark.parametrize("per_member", [1, 2])
def test_under_mpiexec_the_fit_is_the_one_process_fit(inputs, whole, tmp_path, per_member):
    """mpiexec -n 2: two members of one rank, or one member distributed over both ranks;
    rank 0 writes the run directory, and the fit is bitwise the serial one (``whole``),
    its stop and --resume included (stopped after iteration 1, resumed under mpiexec)."""
    out = tmp_path / "mpi"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")}
    env["NUMBA_NUM_THREADS"] = "1"
    dtb_cmd = [MPIEXEC, "-n", "2", str(Path(sys.executable).parent / "dtb")]
    extra = ["--ranks-per-member", str(per_member)]
    p = subprocess.run([*dtb_cmd, *_args(inputs, out, *extra, "--stop-after", "1")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 75, p.stderr
    assert p.stderr.count("stopped after iteration 1") == 1      # rank 0 speaks
    p = subprocess.run([*dtb_cmd, "fit", "--resume", str(out), "-q", *extra],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out)
    with h5py.File(whole / "fit.h5") as a, h5py.File(out / "fit.h5") as b:
        for k in ("ensemble", "posterior", "misfit", "Gamma", "y", "bold/fitted",
                  "bold/unfitted"):
            assert np.array_equal(a[k][()], b[k][()]), k
    m = json.loads((out / "metrics.json").read_text())
    assert m["fit"]["layout"] == {"ranks": 2, "member_communicators": 2 // per_member,
                                  "ranks_per_member": per_member}
    assert m["heldout"] == json.loads((whole / "metrics.json").read_text())["heldout"]


def test_several_free_runs_score_the_models_mean_fc(inputs, whole, tmp_path, capsys):
    """--free-runs 2: the first realisation is the one-run fit's free run (same seed); the
    FC of their Fisher-z mean is scored beside each run's, as recomputed here."""
    out = tmp_path / "k2"
    assert main([a for a in _args(inputs, out, "--free-runs", "2") if a != "-q"]) == 0
    assert "2 realisations: FC r of their mean FC" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    rr = m["heldout"]["realisations"]
    one = json.loads((whole / "metrics.json").read_text())["heldout"]
    assert rr["fitted"]["fc_r_runs"][0] == pytest.approx(one["fitted"]["fc_r"], abs=1e-12)
    assert m["heldout"]["fitted"] == one["fitted"]
    with h5py.File(out / "fit.h5") as h:
        runs = h["bold/fitted_runs"][()]
        test = h["bold/observed_test"][()]
        assert runs.shape[0] == 2 and np.array_equal(runs[0], h["bold/fitted"][()])
    z = np.mean([np.arctanh(np.clip(np.corrcoef(b.T), -0.999999, 0.999999)) for b in runs],
                axis=0)
    want = np.corrcoef(S.upper(np.tanh(z)), S.upper(np.corrcoef(test.T)))[0, 1]
    assert rr["fitted"]["fc_r_of_mean_fc"] == pytest.approx(want, abs=1e-6)
    assert len(rr["unfitted"]["fc_r_runs"]) == 2


def test_one_network_realisation_for_every_run(inputs, whole, tmp_path, capsys):
    """--network-seed: the fit and its free runs use one network; the run records it (the
    manifest, metrics.json, the fitted brain's provenance) and differs from the default
    fit, whose runs each draw their own network; an out-of-range seed is refused."""
    out = tmp_path / "net"
    assert main(_args(inputs, out, "--network-seed", "7", "--free-runs", "2")) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["heldout"]["network_seed"] == 7
    assert json.loads((whole / "metrics.json").read_text())["heldout"]["network_seed"] is None
    assert json.loads((out / "manifest.json").read_text())["options"]["network_seed"] == 7
    spec = BrainSpec.load(out / "brain_fitted.h5")
    assert spec.provenance[-1]["network_seed"] == 7
    # Gamma's noise runs draw their own networks by default (the model-error term)
    assert m["fit"]["model_error"] == "networks"
    assert json.loads((whole / "metrics.json").read_text())["fit"]["model_error"] == "none"
    plain = tmp_path / "net-plain"
    assert main(_args(inputs, plain, "--network-seed", "7", "--model-error", "none")) == 0
    pm = json.loads((plain / "metrics.json").read_text())
    assert pm["fit"]["model_error"] == "none"
    assert pm["fit"]["posterior_mean"] != m["fit"]["posterior_mean"]
    assert main(_args(inputs, tmp_path / "bad", "--model-error", "networks")) == 2
    assert "--model-error: networks -- without --network-seed" in capsys.readouterr().err
    with h5py.File(out / "fit.h5") as h, h5py.File(whole / "fit.h5") as w:
        runs = h["bold/fitted_runs"][()]
        assert not np.array_equal(runs[0], runs[1])
        assert not np.array_equal(h["bold/unfitted"][()], w["bold/unfitted"][()])
    # a run recorded before --model-error resumes as it ran: Gamma from its noise alone
    rec = json.loads((out / "manifest.json").read_text())["options"]
    rec.pop("model_error")
    assert FitOptions.from_record(rec).model_error == "none"
    assert main(_args(inputs, tmp_path / "bad", "--network-seed", "-1")) == 2
    assert "--network-seed: -1 -- expected an integer in [0, 2**32)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_members_of_several_ranks_need_mpiexec(inputs, tmp_path, capsys):
    assert main(_args(inputs, tmp_path / "out", "--ranks-per-member", "2")) == 2
    assert "--ranks-per-member: 2 -- expected 1 outside mpiexec" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, match", [
    (("--brain", "missing.h5"), "missing.h5: file"),
    (("--fit-trs", "0:300"), "overlap"),
    (("--test-trs", "200:401"), "test-trs"),
    (("--fit-trs", "a-b"), "--fit-trs: 'a-b'"),
    (("--param", "coupling=3:1"), "bounds"),
    (("--param", "coupling:0.2-2"), "NAME=LOW:HIGH"),
    (("--param", "X.I_e=0:1/shift"), "no family 'X'"),
    (("--param", "homotopic=0:2@0.5"), "no left/right pairs among the region names"),
    (("--truth", "G=2"), "--truth: 'G'"),
    (("--fc-components", "6"), "fewer than --members"),
    (("--observable", "bold"), "--fit-mean"),
    (("--tr", "0.0503"), "whole steps"),
    (("--members", "1"), "--members: 1"),
])
def test_bad_input_is_refused_before_anything_runs(inputs, tmp_path, capsys, change, match):
    args = _args(inputs, tmp_path / "out")
    flag, value = change
    if flag == "--brain":
        value = str(inputs / value)
    if flag == "--param":
        i = args.index("--truth")
        del args[i:i + 2]
    args[args.index(flag) + 1] = value
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert not (tmp_path / "out").exists()           # nothing written


def test_bold_header_must_cover_the_brain(inputs, tmp_path, capsys):
    x = np.loadtxt(inputs / "bold.csv", delimiter=",", skiprows=1)
    heads = (inputs / "bold.csv").read_text().splitlines()[0].split(",")
    _write(tmp_path / "part.csv", heads[:5], x[:, :5])
    args = _args(inputs, tmp_path / "out")
    args[args.index("--bold") + 1] = str(tmp_path / "part.csv")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "part.csv" in err and "header" in err and "no column for the brain's region" in err
    _write(tmp_path / "odd.csv", [*heads[:5], "Nowhere"], x)
    args[args.index("--bold") + 1] = str(tmp_path / "odd.csv")
    assert main(args) == 2
    assert "'Nowhere'" in capsys.readouterr().err


def test_group_fc_is_checked(inputs, tmp_path, capsys):
    g = np.loadtxt(inputs / "group.csv", delimiter=",", skiprows=1)
    heads = (inputs / "group.csv").read_text().splitlines()[0].split(",")
    g[0, 1] += 0.3
    _write(tmp_path / "asym.csv", heads, g)
    args = _args(inputs, tmp_path / "out")
    args[args.index("--group-fc") + 1] = str(tmp_path / "asym.csv")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "asym.csv" in err and "symmetric" in err
    assert not (tmp_path / "out").exists()


def test_resume_refuses_other_options_and_foreign_directories(inputs, tmp_path, capsys):
    assert main(["fit", "--resume", str(tmp_path)]) == 2
    assert "not a dtb fit run directory" in capsys.readouterr().err
    assert main(["fit", "--resume", str(tmp_path), "--members", "4"]) == 2
    assert "--resume: with ['--members', '4']" in capsys.readouterr().err


def test_params_yaml(tmp_path):
    from dtb.assimilation.fit_options import check_args
    from dtb.cli.parser import _parser

    (tmp_path / "p.yaml").write_text("parameters:\n  - {name: coupling, low: 0.5, high: 3, "
                                     "centre: 1}\n  - {name: E.I_e, low: -0.2, high: 0.2, "
                                     "mode: shift}\n")
    a = _parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv", "--params",
                              str(tmp_path / "p.yaml")])
    o = check_args(a)
    assert [(p.name, p.low, p.high, p.mode) for p in o.params] == \
        [("coupling", 0.5, 3.0, "scale"), ("E.I_e", -0.2, 0.2, "shift")]
    assert o.centre == [1.0, 0.0]
    (tmp_path / "bad.yaml").write_text("parameters:\n  - {name: coupling, low: 0.5}\n")
    a.params = str(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml.*parameters\[0\].*name, low, high"):
        check_args(a)


def test_default_prior_follows_the_brains_adaptation(inputs, tmp_path):
    """Without --param the prior is the regime study's for a plain brain and the adapted
    steady point's for a brain built with --adaptation (read from the file's header); an
    unreadable brain falls back to the plain prior (loading it later names the problem)."""
    from dtb.assimilation.fit_options import ADAPTED_PARAMS, DEFAULT_PARAMS, check_args
    from dtb.cli.parser import _parser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["build", "--sc", str(inputs / "sc.csv"), "--lengths",
                     str(inputs / "len.csv"), "--neurons", "600", "--adaptation", "0.002,500",
                     "-o", str(tmp_path / "adapted.h5"), "-q"]) == 0

    def prior(brain: Path) -> list[tuple[str, float, float, float]]:
        o = check_args(_parser().parse_args(["fit", "--brain", str(brain), "--bold", "x.csv"]))
        return [(p.name, p.low, p.high, c) for p, c in zip(o.params, o.centre, strict=True)]

    assert prior(tmp_path / "adapted.h5") == [tuple(x) for x in ADAPTED_PARAMS]
    assert prior(inputs / "brain.h5") == [tuple(x) for x in DEFAULT_PARAMS]
    assert prior(tmp_path / "missing.h5") == [tuple(x) for x in DEFAULT_PARAMS]
    assert ADAPTED_PARAMS != DEFAULT_PARAMS
