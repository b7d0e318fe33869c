"""Stage clean: de-click, peak-normalise and the original's MP3 colour, shard by shard on the CPUs.

reads   ``generate/shard-NNNNN.npy``; the recipe's ``clean`` mode and level
writes  ``clean/shard-NNNNN.npy`` int16 and its ``.done`` marker
The signal processing: :mod:`onss_tui.pipeline.clean`.
"""

from __future__ import annotations

from pathlib import Path

from onss_tui.pipeline import clean as dsp
from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.stages._shards import parallel, shard_jobs

__all__ = ["run"]


def _job(src: str, dst: str, mode: str, dbfs: float) -> None:
    dsp.clean_shard(RunDir.checked(Path(src)), dst, mode, dbfs)
    RunDir.mark_done(Path(dst))


def run(ctx: StageContext) -> dict:
    c = ctx.recipe.clean
    shards, jobs = shard_jobs(ctx, "generate", "clean", "shard")
    parallel(_job, [(s, d, c.mode, c.normalize_dbfs) for s, d in jobs], ctx.plan.cpu_workers)
    ctx.emit("clean", "progress", done=len(shards), total=len(shards))
    return {"shards": len(shards), "mode": c.mode}
