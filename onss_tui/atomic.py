"""Atomic file writes: a temp file beside the target, fsync, rename, fsync of the folder.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a
half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "fsync_dir", "TEMP_SUFFIXES",
           "umask_mode"]

TEMP_SUFFIXES = (".tmp", ".part")  # what onss's unfinished files end in (``.<name>.<random><suffix>``)


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` as the process's umask lets a new file have it (read without changing the umask)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(old)
    return mode & ~old


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file for writing; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())  # mkstemp makes it 0600; what a user keeps follows the umask
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


class _Writer:
    """Hides the real file from numpy, which would otherwise use ndarray.tofile: its errors on a
    full disk carry no errno, while plain writes raise ENOSPC/EFBIG that callers can explain."""

    def __init__(self, f):
        self.write = f.write


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.lib.format.write_array(_Writer(f), np.asanyarray(array), allow_pickle=False)
