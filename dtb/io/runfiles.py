"""What a run directory holds, as far as dtb is concerned: which entries dtb wrote (so that
``--overwrite`` removes those and nothing else), and whether the files its manifest lists
are still the files dtb wrote (so that no reader uses damaged data silently).

A manifest dtb wrote has a known ``format`` (``FORMATS``) and ``format_version`` and lists
in ``written`` the top-level entries the run may write (``manifest.json``, ``spikes.h5``,
``spikes/``, ``series.zarr/``, ``checkpoints/``, ...).  Entries dtb owns whole are those
names, its temporary files (``.dtb-tmp-*``, ``.dtb-old-*``) and its lock; ``report/`` is
owned file by file (``REPORT_RECORD`` lists what ``dtb report`` wrote there).  Anything
else is the user's: ``foreign_entries`` names it and the run directory refuses to clear.

``verify_outputs`` checks every file listed in a manifest's ``outputs`` (entries with a
``path`` and a ``sha256`` and/or ``bytes``; Zarr trees with ``sha256_tree``): present,
the recorded size, and the recorded SHA-256 when the outputs are small (``HASH_BYTES``)
or on request.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dtb.errors import InputError
from dtb.io.fileio import TMP_PREFIX, sha256_file

MANIFEST = "manifest.json"
#: manifest formats this dtb reads, and their versions
FORMATS: dict[str, tuple[int, ...]] = {"dtb-run": (1,), "dtb-assimilation": (1,), "dtb-fit": (1,)}
#: what manifests without a ``written`` list (dtb before it) may have written
LEGACY_WRITTEN: dict[str, tuple[str, ...]] = {
    "dtb-run": (MANIFEST, "brain.h5", "spikes.h5", "spikes", "series.zarr", "series.h5",
                "series", "report", "checkpoints"),
    "dtb-assimilation": (MANIFEST, "brain.h5", "assimilation.zarr", "metrics.json", "figures",
                         "observed_bold.csv", "checkpoints"),
}
OLD_PREFIX = ".dtb-old-"  # an earlier run set aside while its replacement starts
LOCK = ".dtb-lock"
REPORT = "report"
REPORT_RECORD = ".dtb-report.json"
REPORT_FORMAT = "dtb-report"
#: files of a report written before reports recorded themselves
LEGACY_REPORT_FILES = ("raster.png", "rates.png", "bold.png", "fc.png", "index.md")
#: outputs up to this many bytes in all are checked against their SHA-256 by default
HASH_BYTES = 256 << 20


class RefusedOutput(InputError):
    """An output path that dtb will not write or clear (it holds files dtb did not write,
    or an input of the run): the user's choice of path, so the exit status is 2."""

    def __init__(self, message: str):
        super().__init__("", None, None, "", message)  # the message names path and expectation


class DamagedOutput(InputError):
    """A run directory whose files differ from what its manifest lists (missing, another
    size or checksum): exit status 2, the message names the file."""

    def __init__(self, message: str):
        super().__init__("", None, None, "", message)  # the message names path and expectation


def config_digest(config: Any) -> str:
    """SHA-256 of a configuration (JSON values) in canonical form (sorted keys)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def config_differences(old: Any, new: Any, at: str = "") -> list[str]:
    """Where two JSON-like values differ: ``["simulation.t: 100.0 -> 200.0", ...]``."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            p = f"{at}.{k}" if at else str(k)
            if k not in old:
                out.append(f"{p}: added ({new[k]!r})")
            elif k not in new:
                out.append(f"{p}: removed (was {old[k]!r})")
            else:
                out += config_differences(old[k], new[k], p)
        return out
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in config_differences(a, b, f"{at}[{i}]")]
    if old != new:
        return [f"{at or 'value'}: {_short(old)} -> {_short(new)}"]
    return []


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 80 else s[:77] + "..."


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of directory ``path`` as a dict; None when there is none or it is not
    a JSON object."""
    try:
        m = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return m if isinstance(m, dict) else None


def format_problem(m: Mapping[str, Any] | None) -> str | None:
    """Why manifest ``m`` is not one this dtb wrote and can read (None: it is)."""
    if m is None:
        return f"no readable {MANIFEST}"
    fmt, ver = m.get("format"), m.get("format_version")
    if fmt not in FORMATS:
        return f"format {fmt!r} is not a dtb run's ({', '.join(FORMATS)})"
    if ver not in FORMATS[fmt]:
        return (f"format_version {ver!r} of {fmt} is not one this dtb reads "
                f"({', '.join(map(str, FORMATS[fmt]))}; written by a newer or altered dtb?)")
    return None


def written(m: Mapping[str, Any]) -> set[str]:
    """The top-level names a run directory's manifest says dtb may have written."""
    w = m.get("written")
    if isinstance(w, list) and all(isinstance(x, str) for x in w):
        names = set(w)
    else:
        names = set(LEGACY_WRITTEN.get(str(m.get("format")), ()))
    return {n for n in names if n and "/" not in n and n not in (".", "..")} | {MANIFEST}


def report_files(d: Path) -> set[str] | None:
    """The files ``dtb report`` wrote into directory ``d`` (its record), None if ``d``
    holds no record."""
    try:
        r = json.loads((d / REPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(r, dict) or r.get("format") != REPORT_FORMAT:
        return None
    files = r.get("files")
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def foreign_in_report(d: Path, legacy_ok: bool) -> list[str]:
    """Entries of report directory ``d`` that ``dtb report`` did not write; ``legacy_ok``:
    without a record, take the files of an older dtb's report as dtb's."""
    try:
        entries = sorted(os.listdir(d))
    except OSError:
        return []
    mine = report_files(d)
    if mine is None:
        mine = set(LEGACY_REPORT_FILES) if legacy_ok else set()
    mine |= {REPORT_RECORD, LOCK}
    return [e for e in entries if e not in mine and not e.startswith(TMP_PREFIX)]


def foreign_entries(path: Path, m: Mapping[str, Any]) -> list[str]:
    """Entries of run directory ``path`` that dtb did not write, by its manifest ``m``
    (relative paths; ``report/x`` for a file in the report directory)."""
    mine = written(m)
    out = []
    for e in sorted(os.listdir(path)):
        if e in (LOCK,) or e.startswith((TMP_PREFIX, OLD_PREFIX)):
            continue
        if e not in mine:
            out.append(e)
        elif e == REPORT and (path / e).is_dir() and not (path / e).is_symlink():
            out += [f"{REPORT}/{x}" for x in foreign_in_report(path / e, legacy_ok=True)]
    return out


# --- verification ------------------------------------------------------------------------

def listed_files(outputs: Any) -> Iterator[dict[str, Any]]:
    """Every file entry in a manifest's ``outputs``: dicts with a ``path`` and a
    ``sha256``, ``bytes`` or ``sha256_tree``, nested anywhere."""
    if isinstance(outputs, Mapping):
        if isinstance(outputs.get("path"), str) and any(
                k in outputs for k in ("sha256", "bytes", "sha256_tree")):
            yield dict(outputs)
        for v in outputs.values():
            yield from listed_files(v)
    elif isinstance(outputs, list):
        for v in outputs:
            yield from listed_files(v)


def _inside(root: Path, rel: str) -> Path:
    p = (root / rel)
    if os.path.isabs(rel) or ".." in Path(rel).parts:
        raise DamagedOutput(f"{root / MANIFEST}: lists {rel!r}, a path outside the run "
                            "directory -- expected paths relative to it")
    return p


def tree_digest(path: Path) -> tuple[str, int, int]:
    """(SHA-256 over the sorted relative paths and file digests, files, bytes) of a
    directory tree (a Zarr store)."""
    h = hashlib.sha256()
    n = size = 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        h.update(f"{rel}\0{sha256_file(f)}\n".encode())
        n += 1
        size += f.stat().st_size
    return h.hexdigest(), n, size


def verify_outputs(path: str | os.PathLike[str], m: Mapping[str, Any],
                   checksums: bool | None = None) -> dict[str, int]:
    """Check the files manifest ``m`` of run directory ``path`` lists in its ``outputs``:
    each present, a regular file, of the recorded size; and of the recorded SHA-256 when
    ``checksums`` is true, or None and the listed files hold at most ``HASH_BYTES``.

    Raises ``DamagedOutput`` naming the first file that differs.  Returns counts:
    {"files", "bytes", "hashed"}."""
    root = Path(path)
    entries = list(listed_files(m.get("outputs") or {}))
    seen: dict[str, dict[str, Any]] = {}
    for e in entries:  # the same file may be listed twice (a series part in two places)
        seen.setdefault(e["path"], e)
    total = 0
    for rel, e in seen.items():
        p = _inside(root, rel)
        tree = "sha256_tree" in e
        if not (p.is_dir() if tree else p.is_file()):
            what = "directory" if tree else "file"
            raise DamagedOutput(f"{p}: missing -- the manifest {root / MANIFEST} lists this "
                                f"{what} as an output of the run; the run directory is "
                                "damaged (restore the file or run again)")
        if tree:
            n, size = _tree_size(p)
            if isinstance(e.get("files"), int) and n != e["files"]:
                raise DamagedOutput(f"{p}: {n} files, the manifest lists {e['files']} -- "
                                    "files of this store are missing or were added")
        else:
            size = p.stat().st_size
        if isinstance(e.get("bytes"), int) and size != e["bytes"]:
            raise DamagedOutput(f"{p}: {size} bytes, the manifest lists {e['bytes']} -- "
                                "the file was truncated or changed after the run wrote it")
        total += size
    hashed = 0
    if checksums or (checksums is None and total <= HASH_BYTES):
        for rel, e in seen.items():
            p = root / rel
            if "sha256_tree" in e:
                got = tree_digest(p)[0]
                want = e["sha256_tree"]
            elif "sha256" in e:
                got, want = sha256_file(p), e["sha256"]
            else:
                continue
            hashed += 1
            if got != want:
                raise DamagedOutput(f"{p}: SHA-256 {got}, the manifest lists {want} -- the "
                                    "file was changed after the run wrote it")
    return {"files": len(seen), "bytes": total, "hashed": hashed}


def _tree_size(path: Path) -> tuple[int, int]:
    n = size = 0
    for f in path.rglob("*"):
        if f.is_file():
            n += 1
            size += f.stat().st_size
    return n, size
