#!/usr/bin/env python
"""Generate dtb's embedded default subject: a synthetic, openly licensed (CC0-1.0) brain.

Nothing here comes from a real person. The script draws, from one fixed seed, an MNI-like
4 mm brain (two ellipsoidal hemispheres with a cortical ribbon cut into 34 patches each, and
seven deep grey-matter nuclei per side), a grey-matter probability map, a structural
connectome that follows the exponential distance rule with hubs and homotopic links, tract
lengths, and a synaptic-density (SV2A PET-like) map. See data/README.md for what each file
holds, what the numbers imitate and what they do not.

Usage::

    python data/make_default_subject.py [--out data/default_subject] [--quiet]

Needs numpy, scipy and nibabel only. The output is a pure function of SEED (and of the
numpy/scipy versions' random streams and arithmetic): running it twice gives identical files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from dtb.data.synthetic_anatomy import (
    AFFINE,
    N_CORTICAL_PER_HEMI,
    N_REGIONS,
    RIBBON_DEPTH,
    SUBCORTICAL,
    label_grey_matter,
    make_brain,
    make_cortex,
    make_gm,
    make_subcortical,
    region_table,
    world_coords,
)
from dtb.data.synthetic_connectome import make_connectome, make_pet

SEED = 20240611


OUTPUT_FILES = (
    "atlas.nii.gz",
    "gm.nii.gz",
    "regions.tsv",
    "sc_weights.csv",
    "tract_lengths.csv",
    "pet_sv2a.csv",
    "labels.txt",
    "default_subject_tvb.zip",
)


# ---------------------------------------------------------------- writing
def matrix_csv(labels: np.ndarray, mat: np.ndarray, fmt: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", *labels.tolist()])
    for lab, row in zip(labels, mat, strict=True):
        w.writerow([int(lab), *(format(v, fmt) for v in row)])
    return buf.getvalue()


def tvb_zip(path: Path, files: dict[str, str]) -> None:
    """Deterministic zip (fixed timestamps and order)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)


def generate(out: Path) -> dict:
    """Write every file of the default subject into `out`; return summary statistics."""
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    xyz = world_coords()

    brain, depth = make_brain(rng, xyz)
    sub_labels, sub_gm = make_subcortical(rng, xyz, brain)
    ribbon = brain & (depth <= RIBBON_DEPTH) & (sub_labels == 0)
    cortex, cortical_names = make_cortex(rng, xyz, ribbon)
    nc2 = 2 * N_CORTICAL_PER_HEMI
    labels = np.where(sub_labels > 0, sub_labels + nc2, cortex).astype(np.int16)
    gm = make_gm(rng, brain, depth, cortex, sub_gm, xyz[0])
    labels = label_grey_matter(labels, gm, xyz[0])
    sub_names = [f"sub-{h}h-syn-{s[0]}" for h in "lr" for s in SUBCORTICAL]
    names = cortical_names + sub_names

    cents, volume = region_table(xyz, labels, gm)
    weights, length, hub, roles = make_connectome(rng, cents, volume, names)
    pet = make_pet(rng, cents, names)
    lab = np.arange(1, N_REGIONS + 1)
    hemi = ["L"] * N_CORTICAL_PER_HEMI + ["R"] * N_CORTICAL_PER_HEMI
    hemi += ["L"] * len(SUBCORTICAL) + ["R"] * len(SUBCORTICAL)
    cortical = [1] * nc2 + [0] * (N_REGIONS - nc2)

    # volumes
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm")
    img = nib.Nifti1Image(labels, AFFINE, header)
    img.header.set_data_dtype(np.int16)
    img.set_qform(AFFINE, code=4)  # 4 = MNI152
    img.set_sform(AFFINE, code=4)
    nib.save(img, out / "atlas.nii.gz")
    gimg = nib.Nifti1Image(gm, AFFINE, header.copy())
    gimg.header.set_data_dtype(np.float32)
    gimg.set_qform(AFFINE, code=4)
    gimg.set_sform(AFFINE, code=4)
    nib.save(gimg, out / "gm.nii.gz")

    # tables
    rows = ["label\tname\themisphere\tcortical\tx\ty\tz\tvolume_mm3"]
    for r in range(N_REGIONS):
        x, y, z = cents[r]
        rows.append(
            f"{lab[r]}\t{names[r]}\t{hemi[r]}\t{cortical[r]}\t{x:.2f}\t{y:.2f}\t{z:.2f}"
            f"\t{volume[r]:.1f}"
        )
    (out / "regions.tsv").write_text("\n".join(rows) + "\n")
    sc_text = matrix_csv(lab, weights, "d")
    len_text = matrix_csv(lab, length, ".2f")
    (out / "sc_weights.csv").write_text(sc_text)
    (out / "tract_lengths.csv").write_text(len_text)
    (out / "pet_sv2a.csv").write_text(
        "label,value\n" + "".join(f"{lab[r]},{pet[r]:.3f}\n" for r in range(N_REGIONS))
    )
    (out / "labels.txt").write_text("".join(f"{v}\n" for v in lab))

    def plain(mat: np.ndarray, fmt: str) -> str:
        return "".join(" ".join(format(v, fmt) for v in row) + "\n" for row in mat)

    tvb_zip(
        out / "default_subject_tvb.zip",
        {
            "weights.txt": plain(weights, "d"),
            "tract_lengths.txt": plain(length, ".2f"),
            "centres.txt": "".join(
                f"{names[r]} {cents[r][0]:.2f} {cents[r][1]:.2f} {cents[r][2]:.2f}\n"
                for r in range(N_REGIONS)
            ),
            "areas.txt": "".join(f"{v:.1f}\n" for v in volume),
            "cortical.txt": "".join(f"{c}\n" for c in cortical),
            "hemispheres.txt": "".join(f"{int(h == 'R')}\n" for h in hemi),
        },
    )
    return summarize(weights, length, volume, roles, pet, names, cents)


def summarize(weights, length, volume, roles, pet, names, cents) -> dict:
    """Statistics the README quotes."""
    n = N_REGIONS
    nc2 = 2 * N_CORTICAL_PER_HEMI
    iu = np.triu_indices(n, 1)
    w = weights[iu].astype(float)
    ln = length[iu]
    on = w > 0
    slope = np.polyfit(ln[on], np.log(w[on]), 1)[0]
    strength = weights.sum(axis=1)
    top = np.argsort(strength)[::-1][:8]
    dist = np.linalg.norm(cents[:, None] - cents[None], axis=2)[iu]
    return {
        "density": float(on.mean()),
        "edges": int(on.sum()),
        "decay_per_mm": float(-slope),
        "median_length_connected_mm": float(np.median(ln[on])),
        "median_length_all_mm": float(np.median(ln)),
        "median_distance_all_mm": float(np.median(dist)),
        "tortuosity_median": float(np.median(ln / dist)),
        "strength_max_over_median": float(strength.max() / np.median(strength)),
        "degree_range": (int((weights > 0).sum(1).min()), int((weights > 0).sum(1).max())),
        "top_strength": [(names[i], int(strength[i])) for i in top],
        "hub_roles": roles,
        "cortical_volume_mm3": (float(volume[:nc2].min()), float(volume[:nc2].max())),
        "cortical_volume_ratio": float(volume[:nc2].max() / volume[:nc2].min()),
        "subcortical_volume_mm3": (float(volume[nc2:].min()), float(volume[nc2:].max())),
        "total_gm_cm3": float(volume.sum() / 1000.0),
        "cortical_gm_cm3": float(volume[:nc2].sum() / 1000.0),
        "pet_cortical_mean": float(pet[:nc2].mean()),
        "pet_subcortical_mean": float(pet[nc2:].mean()),
        "weight_range": (int(w[on].min()), int(w[on].max())),
    }


def sha256s(out: Path) -> dict[str, str]:
    """sha256 of every generated file, for the README's provenance section."""
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in OUTPUT_FILES}


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=here / "default_subject")
    ap.add_argument("--quiet", action="store_true", help="print nothing")
    args = ap.parse_args(argv)
    stats = generate(args.out)
    if not args.quiet:
        for k, v in stats.items():
            print(f"{k}: {v}")
        print("sha256:")
        for name, digest in sha256s(args.out).items():
            print(f"  {digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
