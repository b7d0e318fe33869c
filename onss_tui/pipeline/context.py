"""What a stage gets: the run's recipe, its folder, the machine, the plan (once made), and a way to
report. A stage is a function ``run(ctx) -> dict`` of its counts; it reads its inputs from the run
folder, writes its outputs there atomically, and decides nothing the plan holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onss_tui.pipeline.rundir import RunDir
from onss_tui.recipe import Recipe

if TYPE_CHECKING:
    from onss_tui.pipeline.engines import Engine
    from onss_tui.pipeline.plan import Machine, RunPlan

__all__ = ["StageContext", "RunError"]

Emit = Callable[..., Any]


class RunError(Exception):
    """A stage cannot go on; the message names the stage, the file and the fix."""


@dataclass
class StageContext:
    recipe: Recipe  # as run: every path absolute
    run: RunDir
    machine: Machine
    emit: Emit  # emit(stream, event, **fields): into the run's events, and to the listener
    listener: Callable[[dict], None] | None = None  # shown events written by other processes (workers)
    _plan: RunPlan | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def plan(self) -> RunPlan:
        """The run's plan (read from plan.json once the plan stage has written it)."""
        if self._plan is None:
            self._plan = self.run.plan()
        return self._plan

    def engine(self) -> Engine:
        """The plan's engine in the supervisor: on the first executor's GPU (where the plan measured)."""
        if self._engine is None:
            from onss_tui.pipeline.engines import engine_for

            self._engine = engine_for(self.plan, self.machine.device_of(self.plan.executors[0].gpu))
        return self._engine

    def release(self) -> None:
        """Drop the supervisor's model (a GPU's memory goes back before the workers start)."""
        if self._engine is not None:
            self._engine.release()
            self._engine = None

    def stage_dir(self, stage: str) -> Path:
        return self.run.stage_dir(stage)
