"""Pad files (``.bin``): raw little-endian int16, no header, shape (R*R*P, L) (spec §3.6.3).

Row ``(yi * R + xi) * P + pi`` holds the sound at grid point (xi, yi) (x left to right, y top to
bottom) and pitch index pi; the file is named ``<top_left>_<top_right>_<bottom_left>_<bottom_right>.bin``,
the device's corner order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from onss_tui.atomic import atomic_write
from onss_tui.vocab import ROW_LENGTH, SAMPLE_RATE  # re-exported: the pipeline and the device modules import them here

FADE = 8
WALK_BACK = 16
DTYPE = np.dtype("<i2")

__all__ = ["ROW_LENGTH", "SAMPLE_RATE", "pad_filename", "row_index", "pad_size", "post_process", "write_pad",
           "open_pad"]


def pad_filename(combination: Sequence[str]) -> str:
    if len(combination) != 4:
        raise ValueError("a pad combines exactly four instruments")
    return "_".join(combination) + ".bin"


def row_index(xi: int, yi: int, pi: int, resolution: int, n_pitches: int) -> int:
    return (yi * resolution + xi) * n_pitches + pi


def pad_size(resolution: int, n_pitches: int, length: int = ROW_LENGTH) -> int:
    """Exact size in bytes of a pad file."""
    return resolution * resolution * n_pitches * length * DTYPE.itemsize


def post_process(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, onset_search: float | None = 0.25,
                 length: int = ROW_LENGTH) -> tuple[np.ndarray, int]:
    """Onset-trim a sound into one pad row (spec §3.6.2); returns (int16 row [length], onset).

    The onset is the first sample above 10 % of the peak within the first ``onset_search`` seconds
    (``None``: the whole file, as the original's positional-argument bug did), walked back 16
    samples. The row is ``length`` samples from there (zero-padded), with 8-sample linear fades in
    and out; int16 values truncate toward zero as the original's cast did. ``audio`` is int16
    samples or float in [-1, 1].
    """
    a = np.asarray(audio)
    x = a.astype(np.float32) if a.dtype.kind in "iu" else np.asarray(a, np.float32) * np.float32(32768)
    x = np.clip(x, -32768, 32767)
    end = len(x) if onset_search is None else int(onset_search * sample_rate)
    head = np.abs(x[:end]) if end > 0 else np.abs(x)
    threshold = 0.1 * (head.max() if head.size else 0.0)
    onset = int(np.argmax(np.abs(x) > threshold)) if x.size else 0
    onset = max(onset - WALK_BACK, 0)
    row = np.zeros(length, dtype=np.float32)
    piece = x[onset : onset + length]
    row[: len(piece)] = piece
    row[:FADE] *= np.linspace(0, 1, FADE, dtype=np.float32)
    row[-FADE:] *= np.linspace(1, 0, FADE, dtype=np.float32)
    return row.astype(np.int16), onset


def write_pad(path: str | os.PathLike, rows: Iterable[np.ndarray], n_rows: int, length: int = ROW_LENGTH) -> Path:
    """Write ``n_rows`` rows of ``length`` int16 samples atomically and check the file's size."""
    path = Path(path)
    count = 0
    with atomic_write(path, "wb") as f:
        for row in rows:
            r = np.asarray(row)
            if r.shape != (length,) or r.dtype.kind not in "i":
                raise ValueError(f"{path.name}: row {count} is {r.dtype} {list(r.shape)}, expected int16 [{length}]")
            f.write(r.astype(DTYPE, copy=False).tobytes())
            count += 1
        if count != n_rows:
            raise ValueError(f"{path.name}: got {count} rows, expected {n_rows}")
    size = path.stat().st_size
    if size != n_rows * length * DTYPE.itemsize:
        raise OSError(f"{path}: wrote {size} bytes, expected {n_rows * length * DTYPE.itemsize}")
    return path


def open_pad(path: str | os.PathLike, resolution: int, n_pitches: int, length: int = ROW_LENGTH) -> np.memmap:
    """Map a pad read-only as int16 [R*R*P, L]; raises ValueError if the size is not exact."""
    path = Path(path)
    want = pad_size(resolution, n_pitches, length)
    have = path.stat().st_size
    if have != want:
        raise ValueError(f"{path}: {have:,} bytes, expected {want:,} (R={resolution}, P={n_pitches}, L={length})")
    return np.memmap(path, dtype=DTYPE, mode="r", shape=(resolution * resolution * n_pitches, length))
