"""Writing and checking files safely: atomic writes, HDF5 through plain file I/O, SHA-256.

Every file dtb writes goes through a temporary name in the target's directory (prefix
``TMP_PREFIX``), is fsynced and renamed (``os.replace``), so a reader never sees half a
file.  HDF5 is the delicate case: when the disk fills up while the HDF5 library writes
(its own file driver, or h5py's Python-file driver), the library fails on close and then
crashes the process (SIGSEGV).  ``write_h5_atomic`` therefore gives h5py a file object
that never fails (``LatchedFile``): the first write error is kept, later writes are
skipped, the library finishes normally, and the error is raised afterwards as an
``OutputError`` naming the file, the temporary file removed.

Files are created with the default mode (0666 less the umask), as ``open`` does.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from dtb.errors import OutputError

TMP_PREFIX = ".dtb-tmp-"  # temporary files in a run directory; never user files


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file (``hashlib.file_digest``: read in blocks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digest_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of a file."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        return digest, os.fstat(f.fileno()).st_size


def file_entries(root: Path, folder: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """A manifest's ``outputs`` entries of the files ``names`` in ``root/folder``:
    {name: {"path": "folder/name", "sha256": hex digest, "bytes": size}}."""
    out = {}
    for n in names:
        digest, size = digest_file(root / folder / n)
        out[n] = {"path": f"{folder}/{n}", "sha256": digest, "bytes": size}
    return out


def why(e: BaseException) -> str:
    """The reason of an OSError without its errno prefix (its message otherwise)."""
    return (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (makes a rename in it durable); a no-op where that is impossible."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def tmp_name(final: Path) -> Path:
    """The temporary name ``final`` is written under (same directory, this process)."""
    return final.with_name(f"{TMP_PREFIX}{os.getpid()}-{final.name}")


def write_atomic(final: str | os.PathLike[str], image: Any, what: str = "output"
                 ) -> tuple[str, int]:
    """Write bytes (``image``, any buffer) to ``final`` through a temporary name in the same
    directory, fsynced and renamed; returns (SHA-256 hex digest, size in bytes).

    Raises ``OutputError`` naming ``final`` (disk full, read-only, ...); nothing is left
    under the temporary name.
    """
    final = Path(final)
    tmp = tmp_name(final)
    try:
        digest = hashlib.sha256(image).hexdigest()
        size = len(memoryview(image))
        with open(tmp, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{final}: cannot write the {what}: {why(e)}") from e
    return digest, size


class LatchedFile(io.FileIO):
    """A binary file whose writes never raise: the first ``OSError`` of ``write``,
    ``truncate`` or ``flush`` is kept in ``error`` and every later write is skipped (it
    reports success).  Give it to h5py (``h5py.File(LatchedFile(path, "w+b"), "w")``) and
    check ``error`` after closing: the HDF5 library then never sees a failed write, which
    it cannot recover from."""

    error: OSError | None = None

    def write(self, b: Any) -> int:
        n = len(memoryview(b))
        if self.error is None:
            try:
                view = memoryview(b).cast("B")
                while view:  # FileIO.write may write less than asked
                    k = super().write(view)
                    view = view[k:]
            except OSError as e:
                self.error = e
        return n

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as e:
                self.error = e
        return self.tell() if size is None else size

    def flush(self) -> None:
        if self.error is None and not self.closed:
            try:
                super().flush()
            except OSError as e:
                self.error = e

    def check(self, path: Path, what: str) -> None:
        """Raise OutputError (naming ``path``) if a write failed."""
        if self.error is not None:
            raise OutputError(f"{path}: cannot write the {what}: {why(self.error)}") \
                from self.error


def write_h5_atomic(final: str | os.PathLike[str], fill: Callable[[Any], Any],
                    what: str = "output", tmp: Path | None = None) -> tuple[str, int, Any]:
    """Write an HDF5 file at ``final``: ``fill(h5py.File)`` writes its content into a
    temporary file beside it (through a ``LatchedFile``), which is fsynced and renamed.

    Returns (SHA-256, bytes, what ``fill`` returned).  A failed write (a full disk) raises
    ``OutputError`` naming ``final``, and an exception of ``fill`` propagates; in both
    cases the temporary file is removed.  ``tmp``: the temporary name to use (default
    ``tmp_name(final)``)."""

    final = Path(final)
    tmp = tmp or tmp_name(final)
    try:
        fh = LatchedFile(tmp, "w+b")
        try:
            with h5py.File(fh, "w") as f:
                result = fill(f)
            fh.flush()
            fh.check(final, what)
            os.fsync(fh.fileno())
        finally:
            fh.close()
        digest, size = digest_file(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OutputError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{final}: cannot write the {what}: {why(e)}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest, size, result
