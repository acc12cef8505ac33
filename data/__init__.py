"""Embedded data (installed as ``dtb.data``): the default subject; see README.md here."""

from pathlib import Path

DEFAULT_SUBJECT = Path(__file__).resolve().parent / "default_subject"


def demo_inputs() -> dict[str, str]:
    """Paths of the embedded default subject's files (see data/README.md)."""
    d = DEFAULT_SUBJECT
    return {"atlas": str(d / "atlas.nii.gz"), "gm": str(d / "gm.nii.gz"),
            "regions": str(d / "regions.tsv"), "sc": str(d / "sc_weights.csv"),
            "lengths": str(d / "tract_lengths.csv"), "pet": str(d / "pet_sv2a.csv")}
