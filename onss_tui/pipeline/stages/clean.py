"""Stage clean: de-click, peak-normalise and the original's MP3 colour, shard by shard on the CPUs.

reads   ``generate/shard-NNNNN.npy``; the recipe's ``clean`` mode and level
writes  ``clean/shard-NNNNN.npy`` int16 and its ``.done`` marker
Mode ``mp3`` first checks that the installed libsndfile writes MP3, and says how to fix it if not.
The signal processing: :mod:`onss_tui.pipeline.clean`.
"""

from __future__ import annotations

from pathlib import Path

from onss_tui.pipeline import clean as dsp
from onss_tui.pipeline.context import RunError, StageContext
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.stages._shards import parallel, shard_jobs

__all__ = ["run", "check_mp3"]

MP3_FIX = ("Fix: pip install -U 'soundfile>=0.13' (its wheels bundle libsndfile 1.1 or newer, which writes MP3; a "
           "soundfile using the system's libsndfile needs one 1.1 or newer built with MP3), or set 'clean: mode: "
           "lowpass' in the recipe (the same ~5.8 kHz band limit, without the codec's colour).")


def _job(src: str, dst: str, mode: str, dbfs: float) -> None:
    dsp.clean_shard(RunDir.checked(Path(src)), dst, mode, dbfs)
    RunDir.mark_done(Path(dst))


def check_mp3() -> None:
    """Refuse the ``mp3`` mode where libsndfile cannot write MP3: a RunError that names the fix."""
    why = dsp.mp3_unavailable()
    if why is not None:
        raise RunError(f"clean: the recipe's clean mode mp3 needs a libsndfile that writes MP3, and {why}. {MP3_FIX}")


def run(ctx: StageContext) -> dict:
    c = ctx.recipe.clean
    if c.mode == "mp3":
        check_mp3()  # before any shard: not one per worker, and not a traceback from inside libsndfile
    shards, jobs = shard_jobs(ctx, "generate", "clean", "shard")
    parallel(_job, [(s, d, c.mode, c.normalize_dbfs) for s, d in jobs], ctx.plan.cpu_workers,
             ctx.run.path / "logs" / "clean-pool.log")
    ctx.emit("clean", "progress", done=len(shards), total=len(shards))
    return {"shards": len(shards), "mode": c.mode}
