"""Stage pack: onset-trimmed rows per sound, then one ``.bin`` per corner combination.

reads   ``clean/shard-NNNNN.npy``, ``interpolate/pads.json``
writes  ``pack/rows-NNNNN.npy`` (+ ``.done``), ``pads/<tl>_<tr>_<bl>_<br>.bin`` (+ ``pack/done/``)
The row and pad layout: :mod:`onss_tui.pipeline.pack` and :mod:`onss_tui.device.pads`.
"""

from __future__ import annotations

from pathlib import Path

from onss_tui.pipeline import pack as pads
from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.stages._shards import parallel, shard_jobs

__all__ = ["run"]


def _job(src: str, dst: str) -> None:
    pads.rows_shard(RunDir.checked(Path(src)), Path(dst))
    RunDir.mark_done(Path(dst))


def run(ctx: StageContext) -> dict:
    shards, jobs = shard_jobs(ctx, "clean", "pack", "rows")
    parallel(_job, jobs, ctx.plan.cpu_workers, ctx.run.path / "logs" / "pack-pool.log")
    pack_dir = ctx.stage_dir("pack")
    written = pads.build_pads(ctx.run.pad_rows(), [s.model_dump() for s in shards], pack_dir, ctx.run.pads_dir,
                              pack_dir / "done", progress=lambda d, t: ctx.emit("pack", "progress", done=d, total=t))
    return {"pads": len(list(ctx.run.pads_dir.glob("*.bin"))), "written": written}
