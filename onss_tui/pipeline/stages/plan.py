"""Stage plan: every setting of the run decided once, written to ``plan.json`` (a RunPlan).

reads   the recipe, this machine (NVML's GPUs, torch's CUDA), the first two prepared notes (the
        clips precision and kernels are measured on)
writes  ``plan.json``; emits ``precision`` and ``kernels`` events with the measurements
The layout and the measurements themselves: :mod:`onss_tui.pipeline.plan`.
"""

from __future__ import annotations

import numpy as np

from onss_tui.atomic import atomic_write_text
from onss_tui.pipeline import plan as planning
from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.stages.prepare import load_notes

__all__ = ["run"]

FIDELITY_SAMPLES = planning.FIDELITY_SAMPLES  # tests shorten it


def _kept(ctx: StageContext) -> planning.RunPlan | None:
    """A plan an interrupted plan stage already wrote for this recipe: kept, not measured again."""
    try:
        plan = ctx.run.plan()
    except (OSError, ValueError):
        return None
    # (and what an older onss wrote: the whole recipe's digest)
    digests = (planning.stage_recipe_digest(ctx.recipe, "plan"), planning.recipe_digest(ctx.recipe))
    return plan if plan.recipe_sha256 in digests else None


def run(ctx: StageContext) -> dict:
    plan = _kept(ctx)
    if plan is not None:
        ctx._plan = plan
        return {"shards": len(plan.shards), "workers": len(plan.executors), "batch_size": plan.batch_size,
                "precision": plan.precision, "kernels": plan.kernels, "kept": True}
    layout = planning.lay_out(ctx.recipe, ctx.machine)
    clips = None
    if ctx.recipe.engine == "nsynth":
        _, notes = load_notes(ctx.stage_dir("prepare"))
        clips = np.asarray(notes[:2], dtype=np.float32)
    plan = planning.decide(ctx.recipe, ctx.machine, layout, clips, ctx.run.path, ctx.emit,
                           fidelity_samples=FIDELITY_SAMPLES)
    atomic_write_text(ctx.run.plan_path, plan.model_dump_json(indent=1))
    ctx._plan = plan
    return {"shards": len(plan.shards), "workers": len(plan.executors), "batch_size": plan.batch_size,
            "precision": plan.precision, "kernels": plan.kernels}
