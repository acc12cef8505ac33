"""Voxel-level brain build on a whole-brain 2 mm grey-matter grid: time and peak memory.

The grid is the embedded default subject resampled to 2 mm (labels by nearest voxel,
grey matter smoothed by one voxel, so partial-volume voxels at the edges count too), which
gives about 200,000 grey-matter voxels, as a whole-brain 2 mm MNI mask does.  Each size is
run in a fresh process so that peak RSS is the build's own:

    python benchmarks/brain_build.py --neurons 1e8 86e9 --out benchmarks/results

Records: voxels (units), regions, neurons, build seconds (reading, neuron counts, rules),
save seconds, file size, and peak RSS; the spec is O(units + regions^2), so the neuron
count should change neither time nor memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def make_grid(d: Path) -> int:
    """Write atlas_2mm.nii.gz and gm_2mm.nii.gz into d; returns the grey-matter voxel count."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    from dtb.data import DEFAULT_SUBJECT

    a = nib.load(DEFAULT_SUBJECT / "atlas.nii.gz")
    g = nib.load(DEFAULT_SUBJECT / "gm.nii.gz")
    lab = np.asarray(a.dataobj).astype(np.int16).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    gm = np.asarray(g.dataobj).astype(np.float32).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    gm = ndimage.gaussian_filter(gm, 1.25)
    gm[gm < 0.02] = 0.0
    # labels for the smoothed rim: the nearest labelled voxel
    idx = ndimage.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
    lab = np.where(gm > 0, lab[tuple(idx)], 0).astype(np.int16)
    aff = a.affine.copy()
    aff[:3, :3] /= 2.0
    aff[:3, 3] += aff[:3, :3].diagonal() * -0.5  # voxel centres of the finer grid
    nib.save(nib.Nifti1Image(lab, aff), d / "atlas_2mm.nii.gz")
    nib.save(nib.Nifti1Image(gm, aff), d / "gm_2mm.nii.gz")
    return int(((lab > 0) & (gm > 0)).sum())


def worker(d: Path, neurons: int) -> dict:
    from dtb.brain.build import BuildOptions, build
    from dtb.data import DEFAULT_SUBJECT as s

    t0 = time.perf_counter()
    spec = build(atlas=str(d / "atlas_2mm.nii.gz"), gm=str(d / "gm_2mm.nii.gz"),
                 regions=str(s / "regions.tsv"), sc=str(s / "sc_weights.csv"),
                 lengths=str(s / "tract_lengths.csv"), pet=str(s / "pet_sv2a.csv"),
                 options=BuildOptions(level="voxel", neurons=neurons))
    t1 = time.perf_counter()
    out = d / f"brain_{neurons}.h5"
    spec.save(out)
    t2 = time.perf_counter()
    return {"units": spec.n_units, "regions": len(spec.region_labels),
            "neurons": spec.n_neurons, "build_s": t1 - t0, "save_s": t2 - t1,
            "file_mb": out.stat().st_size / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def main(argv: list[str] | None = None) -> int:
    from microcircuit import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=float, nargs="+", default=[1e8, 86e9])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(Path(a.worker[0]), int(float(a.worker[1])))))
        return 0
    res = {"benchmark": "brain_build", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        res["grey_matter_voxels"] = make_grid(d)
        print(f"2 mm grid: {res['grey_matter_voxels']:,} grey-matter voxels")
        for n in a.neurons:
            p = subprocess.run([sys.executable, __file__, "--worker", str(d), str(int(n))],
                               capture_output=True, text=True)
            if p.returncode:
                print(p.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(p.stdout.strip().splitlines()[-1])
            res["runs"].append(r)
            print(f"neurons {r['neurons']:.3g}: {r['units']:,} units, build {r['build_s']:.1f} s, "
                  f"save {r['save_s']:.1f} s, file {r['file_mb']:.1f} MB, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"brain_build-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
