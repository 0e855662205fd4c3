"""Crash-safe file publishing: write a hidden temp file, fsync, os.replace.

Every file a dataset exposes appears in one atomic rename, so a reader (or a
process killed at any instant) sees either the old file or the new one, never
half of one. Temp files are hidden names ending in ``.tmp``; only a live
writer holding the dataset lock creates them, so any found by the next writer
are stale and removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from embodied.data.errors import DatasetError

TMP_SUFFIX = ".tmp"
LOCK_NAME = ".writer.lock"


def temp_path(final: Path) -> Path:
    """The hidden temp name a file is staged under before `publish` renames it."""
    return final.parent / f".{final.name}.{os.getpid()}{TMP_SUFFIX}"


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Make a fully written temp file visible as `final`, durably."""
    fsync_path(tmp)
    os.replace(tmp, final)
    # The rename itself lives in the directory; without this a power cut may undo it.
    fsync_path(final.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    publish(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_table_atomic(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    pq.write_table(table, tmp)
    publish(tmp, path)


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete temp files left by a writer that died; returns what was removed."""
    stale = [p for p in root.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class WriterLock:
    """An exclusive advisory lock on a dataset folder (released by the OS if the process dies)."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ModuleNotFoundError:  # not POSIX: no lock, single writer is on the caller
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DatasetError(
                    f"{self.path.parent}: another DatasetWriter (pid {holder}) is writing to this dataset. "
                    "Close it first, or write to a different folder.",
                    self.path,
                ) from None
            # The holder before us unlinks the file on release; a lock on that unlinked file guards nothing.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Unlock and remove the lock file, so a closed dataset folder holds only dataset files."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
