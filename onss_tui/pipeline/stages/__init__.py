"""The stages of a run, one module each, in order. Each is ``run(ctx: StageContext) -> dict``
(its counts, stored in state.json); the runner only sequences them."""

from __future__ import annotations

from collections.abc import Callable

from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.rundir import STAGES
from onss_tui.pipeline.stages import clean, embed, generate, interpolate, pack, plan, prepare, settings, validate

__all__ = ["STAGES", "STAGE_FUNCTIONS"]

STAGE_FUNCTIONS: dict[str, Callable[[StageContext], dict]] = {
    "prepare": prepare.run,
    "plan": plan.run,
    "embed": embed.run,
    "interpolate": interpolate.run,
    "generate": generate.run,
    "clean": clean.run,
    "pack": pack.run,
    "settings": settings.run,
    "validate": validate.run,
}
assert tuple(STAGE_FUNCTIONS) == STAGES
