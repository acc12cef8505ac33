"""Embedded data (installed as ``dtb.data``): the default subject; see README.md here."""

from pathlib import Path

DEFAULT_SUBJECT = Path(__file__).resolve().parent / "default_subject"
