"""Stage pack: onset-trimmed rows of ``ROW_LENGTH`` samples per sound, then one ``.bin`` per corner combination.

Rows are made once per sound (``pack/rows-NNNNN.npy``) and gathered into pads in the device's row
order ``(yi * R + xi) * P + pi``; each pad is written atomically, its size checked, then marked done
in ``pack/done/``. The ``pads/`` folder holds nothing but finished ``.bin`` files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onss_tui.atomic import atomic_save_npy
from onss_tui.device.pads import ROW_LENGTH, post_process, write_pad
from onss_tui.pipeline.rundir import RunDir

__all__ = ["rows_shard", "build_pads"]


def rows_shard(src: Path, dst: Path, onset_search: float | None = 0.25) -> None:
    cleaned = np.load(src)  # (the stage checks it against its done marker first)
    atomic_save_npy(dst, np.stack([post_process(a, onset_search=onset_search)[0] for a in cleaned]))


def build_pads(pad_rows: dict[str, list[int]], shards: list[dict], rows_dir: Path, pads_dir: Path,
               done_dir: Path, progress=None) -> int:
    """Write every pad not yet done; returns how many were written."""
    starts = np.array([s["start"] for s in shards])
    arrays = {s["id"]: np.load(RunDir.checked(rows_dir / f"rows-{s['id']:05d}.npy"), mmap_mode="r") for s in shards}
    done_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for k, (name, rows) in enumerate(sorted(pad_rows.items())):
        pad = pads_dir / f"{name}.bin"
        marker = done_dir / f"{name}.bin.done"  # (pads/ holds nothing but finished pads)
        if pad.is_file() and pad.stat().st_size == len(rows) * ROW_LENGTH * 2 and RunDir.is_done(pad, marker):
            continue

        def gather(rows=rows):
            for sound in rows:
                j = int(np.searchsorted(starts, sound, side="right") - 1)
                shard = shards[j]
                yield arrays[shard["id"]][sound - shard["start"]]

        write_pad(pad, gather(), len(rows))
        RunDir.mark_done(pad, marker, rows=len(rows))
        written += 1
        if progress:
            progress(k + 1, len(pad_rows))
    return written
