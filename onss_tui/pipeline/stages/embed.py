"""Stage embed: the encoder over every prepared note (the nsynth engine only).

reads   ``prepare/notes.npy``; the plan's precision and encoder batch, on the plan's first GPU
writes  ``embed/encodings.npy`` float32 [n_notes, frames, 16]
"""

from __future__ import annotations

from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.stages.prepare import load_notes

__all__ = ["run"]


def run(ctx: StageContext) -> dict:
    engine = ctx.engine()
    if not engine.uses_embeddings:
        return {"skipped": f"the {engine.name} engine needs no embeddings"}
    _, notes = load_notes(ctx.stage_dir("prepare"))
    engine.embed(notes, ctx.stage_dir("embed") / "encodings.npy",
                 progress=lambda d, t: ctx.emit("embed", "progress", done=d, total=t))
    ctx.release()  # the GPU's memory is the workers' from here on
    return {"notes": len(notes)}
