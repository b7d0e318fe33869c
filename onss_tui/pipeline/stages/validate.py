"""Stage validate: the pack against the device's rules (what crashes it, silences it, mis-plays it).

reads   ``pads/*.bin``, ``settings.json``
writes  ``validate/report.json`` (every finding); fails the run on an error
"""

from __future__ import annotations

import json

from onss_tui.atomic import atomic_write_text
from onss_tui.pipeline.context import RunError, StageContext

__all__ = ["run"]


def run(ctx: StageContext) -> dict:
    from onss_tui.device.settings import validate_pack

    run = ctx.run
    findings = validate_pack(run.settings_path, run.pads_dir, ctx.recipe.resolution, ctx.recipe.pitches)
    report = [f.__dict__ for f in findings]
    atomic_write_text(ctx.stage_dir("validate") / "report.json", json.dumps(report, indent=2))
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise RunError(f"{run.path}: the pack is not valid: {errors[0]} "
                         f"({len(errors)} errors; see {run.path / 'validate' / 'report.json'})")
    return {"warnings": len(findings)}
