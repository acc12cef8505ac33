"""Parameter sweeps for ``dtb job slurm --sweep``: one dtb argument list per array task, read
from a CSV/TSV/YAML/JSON file and checked against the ``dtb COMMAND`` parser before any
script is written.  Invalid rows raise :class:`~dtb.errors.ConfigError` naming the file, the
row, the option and what was expected.

Public API: :func:`read_sweep`, :func:`check_task_types`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dtb.cli.jobscript import CONTROL, PATTERNS, RESERVED, SOURCE, as_word
from dtb.errors import ConfigError
from dtb.model.config import MAX_CONFIG_BYTES, read_yaml
from dtb.model.problems import short_repr


def read_sweep(path: str | os.PathLike[str]) -> list[list[str]]:
    """The argument lists of a parameter sweep, one per array task.

    CSV or TSV with a header of dtb option names (``seed,scale``), or YAML / JSON: a list
    of mappings (``- {seed: 1, scale: 0.1}``).  A ``true`` value gives the bare flag, an
    empty cell or ``false``/``null`` leaves the option out.  Raises ConfigError naming the
    file, the row and the field.
    """
    p = Path(path)
    where = f"--sweep {str(p)!r}"
    rows = _sweep_rows(p, where)
    if not rows:
        raise ConfigError([f"{where}: no rows -- expected at least one task"], SOURCE)
    problems: list[str] = []
    tasks = [_task_words(row, i, where, p.suffix.lower() in (".csv", ".tsv"), problems)
             for i, row in enumerate(rows)]
    if problems:
        raise ConfigError(problems, SOURCE)
    return tasks


def _sweep_text(p: Path, where: str) -> str:
    """The text of the sweep file ``p`` (UTF-8, at most MAX_CONFIG_BYTES)."""
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{where}: {p.stat().st_size:,} bytes -- expected a sweep "
                               f"file of at most {MAX_CONFIG_BYTES:,} bytes"], SOURCE)
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"{where}: cannot read it ({e.strerror}) -- expected a CSV, TSV, "
                           "YAML or JSON file"], SOURCE) from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{where}: byte {e.start}: {raw[e.start:e.start + 1]!r} -- "
                           "expected UTF-8 text"], SOURCE) from None


def _sweep_rows(p: Path, where: str) -> list[dict[str, Any]]:
    """The rows of the sweep file ``p`` as option -> value mappings, one per task."""
    text = _sweep_text(p, where)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        delim = "\t" if suffix == ".tsv" else ","
        rows = [dict(r) for r in csv.DictReader(text.splitlines(), delimiter=delim)]
        if any(None in r or None in r.values() for r in rows):
            raise ConfigError([f"{where}: a row has more or fewer cells than the header -- "
                               "expected one cell per column"], SOURCE)
        return rows
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigError([f"{where}: suffix {p.suffix!r} -- expected .csv, .tsv, .yaml, "
                           ".yml or .json"], SOURCE)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ConfigError([f"{where}: not valid JSON ({short_repr(str(e))[1:-1]})"],
                              SOURCE) from None
    else:
        try:
            data = read_yaml(p, "sweep file")
        except ConfigError as e:
            raise ConfigError([f"{where}: {x}" for x in e.problems], SOURCE) from None
    if not (isinstance(data, list) and all(isinstance(r, dict) for r in data)):
        raise ConfigError([f"{where}: {type(data).__name__} -- expected a list of "
                           "mappings of option to value, one per task"], SOURCE)
    return data


def _task_words(row: dict[str, Any], i: int, where: str, from_table: bool,
                problems: list[str]) -> list[str]:
    """The dtb arguments of sweep row ``i``; problems found are appended to ``problems``.
    ``from_table``: the row comes from CSV/TSV, where true/false/null are words."""
    pat, expected = PATTERNS["option"]
    words: list[str] = []
    for key, v in row.items():
        k = str(key).strip().removeprefix("--")
        if not pat.fullmatch(k):
            problems.append(f"{where}: row {i}: option {key!r} -- expected {expected}")
            continue
        if k in RESERVED:
            problems.append(f"{where}: row {i}: option {k!r} -- expected an option the "
                            "job does not set itself (not " + ", ".join(sorted(RESERVED))
                            + ")")
            continue
        if isinstance(v, str):
            v = v.strip()
            if from_table:     # as read_sweep's docstring says
                v = {"true": True, "false": False, "null": None}.get(v.lower(), v)
        if v is None or v is False or v == "":
            continue
        if isinstance(v, dict | list):
            problems.append(f"{where}: row {i}: {k}: {short_repr(v)} -- expected a single "
                            "value")
            continue
        if v is True:
            words.append(f"--{k}")
            continue
        w = as_word(v)
        if CONTROL.search(w):
            problems.append(f"{where}: row {i}: {k}: {w!r} -- expected a value without "
                            "control characters (newlines, tabs)")
            continue
        words += [f"--{k}", w]
    return words


def check_task_types(tasks: Sequence[Sequence[str]], command: str, where: str,
                     parser: argparse.ArgumentParser) -> list[str]:
    """Problems with the argument lists of array tasks, found now rather than when a task
    runs on the cluster: each option must be one ``dtb COMMAND`` has (in ``parser``, the
    ``dtb`` parser), given a value if and only if it takes one, of its type (integer,
    number: finite) and among its choices."""

    sub = next(a for a in parser._actions
               if isinstance(a, argparse._SubParsersAction)).choices[command]
    actions = {o: act for act in sub._actions for o in act.option_strings}
    problems: list[str] = []
    for i, words in enumerate(tasks):
        j = 0
        while j < len(words):
            opt = words[j]
            act = actions.get(opt)
            j += 1
            if act is None:
                problems.append(f"{where}: row {i}: option {opt[2:]!r} -- expected an option "
                                f"of dtb {command}")
                continue
            if act.nargs == 0:
                if j < len(words) and words[j] not in actions:
                    problems.append(f"{where}: row {i}: {opt[2:]}: {words[j]!r} -- expected "
                                    "true (a flag takes no value)")
                    j += 1
                continue
            if j >= len(words) or words[j] in actions:
                problems.append(f"{where}: row {i}: {opt[2:]}: no value -- expected a value")
                continue
            value = words[j]
            j += 1
            try:
                x = act.type(value) if act.type is not None else value
            except (TypeError, ValueError):
                problems.append(f"{where}: row {i}: {opt[2:]}: {value!r} -- expected "
                                f"{'an integer' if act.type is int else 'a number'}")
                continue
            if isinstance(x, float) and not math.isfinite(x):
                problems.append(f"{where}: row {i}: {opt[2:]}: {value!r} -- expected a "
                                "finite number")
            elif act.choices is not None and x not in act.choices:
                problems.append(f"{where}: row {i}: {opt[2:]}: {value!r} -- expected one of "
                                f"{', '.join(map(str, act.choices))}")
    return problems
