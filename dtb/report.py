"""``dtb report RUN_DIR``: figures and a summary page of a finished run."""

from __future__ import annotations

import argparse


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    r = subparsers.add_parser("report", help="figures and a summary page of a run directory")
    r.add_argument("run_dir", metavar="RUN_DIR")
    return r


def run_report(args: argparse.Namespace) -> int:
    raise NotImplementedError
