"""The supervisor: runs a recipe's stages in its run directory, skipping finished work.

It only sequences: the lock, the recipe check, each stage in order (``pipeline/stages/``), faults
and events. What a run does is decided once by the plan stage (``plan.json``); every stage after it
reads the plan. Every stage's outputs are written atomically and marked done after, so the runner
can be killed at any moment and started again: finished work is never redone, partial work is
never taken for finished, and the pads come out byte-identical.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onss_tui.atomic import atomic_write_text
from onss_tui.pipeline import plan as planning
from onss_tui.pipeline.context import RunError, StageContext
from onss_tui.pipeline.grid import plan_sounds, stage_bytes
from onss_tui.pipeline.rundir import STAGES, RunDir
from onss_tui.recipe import Recipe, load_recipe, parse_recipe, recipe_yaml

__all__ = ["RunError", "Runner", "resolved_recipe", "run_dir_of", "start_detached"]

Listener = Callable[[dict[str, Any]], None]


def resolved_recipe(recipe: Recipe, base: Path) -> Recipe:
    """The recipe with every path made absolute, as stored in the run directory."""
    data = recipe.model_dump()
    data["inputs"] = str(recipe.inputs_dir(base).resolve())
    data["output"] = str(recipe.output_dir(base).resolve())
    if recipe.checkpoint:
        data["checkpoint"] = str(recipe.resolve(base, recipe.checkpoint).resolve())
    return Recipe.model_validate(data)


def run_dir_of(recipe_path: Path) -> Path:
    """The run folder a recipe file's 'output' names (absolute)."""
    recipe_path = Path(recipe_path)
    return recipe_path_output(resolved_recipe(load_recipe(recipe_path), recipe_path.resolve().parent))


def recipe_path_output(recipe: Recipe) -> Path:
    """A resolved recipe's run folder (absolute)."""
    assert recipe.output is not None, "a resolved recipe names its output"
    return Path(recipe.output)


def start_detached(recipe_path: Path, device: str | None = None) -> tuple[Path, int]:
    """Start ``onss run RECIPE --json`` in its own session (it outlives the terminal and the SSH
    session that started it), logging to ``<run>/logs/supervisor.log``; return (run folder, pid)."""
    recipe_path = Path(recipe_path).resolve()
    run_dir = run_dir_of(recipe_path)
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "onss_tui", "run", str(recipe_path), "--json"]
    argv += ["--device", device] if device else []
    with open(logs / "supervisor.log", "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen(argv, stdin=null, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return run_dir, proc.pid


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e8 else f"{n / 1e6:,.0f} MB"


class Runner:
    def __init__(self, recipe: Recipe, base: Path, listener: Listener | None = None, device: str | None = None,
                 cpu_workers: int | None = None, machine: planning.Machine | None = None):
        self.recipe = resolved_recipe(recipe, base)
        self.run = RunDir(recipe_path_output(self.recipe))
        self.listener = listener
        self.device = device
        self.cpu_workers = cpu_workers
        self._machine = machine

    @classmethod
    def from_file(cls, path: Path, **kw: Any) -> Runner:
        return cls(load_recipe(path), path.resolve().parent, **kw)

    @classmethod
    def from_run_dir(cls, run_dir: Path, **kw: Any) -> Runner:
        r = parse_recipe((run_dir / "recipe.yaml").read_text(), str(run_dir / "recipe.yaml"))
        return cls(r, run_dir, **kw)

    @property
    def machine(self) -> planning.Machine:
        """What the plan may use here (NVML and torch are asked once, when first needed)."""
        if self._machine is None:
            self._machine = planning.Machine.detect(self.device, self.cpu_workers)
        return self._machine

    # -- events ------------------------------------------------------------------------------
    def emit(self, stream: str, event: str, **fields: Any) -> None:
        record = self.run.emit(stream, event, **fields)
        if self.listener:
            self.listener(record)

    def context(self) -> StageContext:
        return StageContext(self.recipe, self.run, self.machine, self.emit, self.listener)

    # -- the run -----------------------------------------------------------------------------
    def _check_paths(self, create: bool = True) -> None:
        out, inputs = self.run.path, Path(self.recipe.inputs)
        if out == inputs or inputs in out.parents:
            raise RunError(f"{out}: the output folder is inside the inputs folder {inputs}; the run would mix its "
                           "files with your notes. Set 'output' to a folder outside 'inputs'.")
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: exists and is not a folder. Set 'output' to a folder.")
        if not create:
            return
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".onss-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunError(f"{out}: cannot write the run folder ({exc.strerror}). "
                           "Set 'output' to a writable folder.") from None

    def preflight(self) -> planning.Layout | None:
        """What can be refused before any work (GPUs the machine lacks, kernels that cannot run);
        a resumed run keeps its plan and checks nothing again."""
        if self.run.has_plan():
            return None
        return planning.lay_out(self.recipe, self.machine)

    def execute(self) -> Path:
        self._check_paths()
        with self.run.lock():
            self._sweep_temp_files()
            self._check_recipe()
            self.preflight()
            self.run.update_state(pid=os.getpid(), status="running", name=self.recipe.name, engine=self.recipe.engine)
            self.emit("supervisor", "run_start", pid=os.getpid(), run=str(self.run.path))
            from onss_tui.pipeline.stages import STAGE_FUNCTIONS

            ctx = self.context()
            try:
                for stage in STAGES:
                    if self.run.stage_status(stage) == "done":
                        self.emit("supervisor", "stage_skip", stage=stage)
                        continue
                    self._run_stage(ctx, stage, STAGE_FUNCTIONS[stage])
            finally:
                ctx.release()
            self.run.update_state(status="done")
            self.emit("supervisor", "run_done", pads=str(self.run.pads_dir), settings=str(self.run.settings_path))
        return self.run.path

    def _run_stage(self, ctx: StageContext, stage: str, fn: Callable[[StageContext], dict]) -> None:
        self.run.set_stage(stage, "running")
        self.emit("supervisor", "stage_start", stage=stage)
        t0 = time.monotonic()
        try:
            try:
                info = fn(ctx) or {}
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    raise
                raise self._out_of_space(stage, exc) from None
        except Exception as exc:
            self.run.set_stage(stage, "failed", error=str(exc))
            self.run.update_state(status="failed")
            self.emit("supervisor", "stage_failed", stage=stage, error=str(exc))
            raise
        seconds = round(time.monotonic() - t0, 3)
        self.run.set_stage(stage, "done", seconds=seconds, **info)
        self.emit("supervisor", "stage_done", stage=stage, seconds=seconds, **info)

    def _out_of_space(self, stage: str, exc: OSError) -> RunError:
        folder = self.run.pads_dir if stage == "pack" else self.run.path / stage
        need = self._space_estimate(stage)
        free = shutil.disk_usage(self.run.path).free
        why = "the file size limit (ulimit -f) was reached" if exc.errno == errno.EFBIG else "the disk is full"
        return RunError(f"{folder}: out of space during {stage}: {why}. This stage writes about "
                        f"{_mb(need)} there ({_mb(free)} free now). Free some space and run "
                        "again: finished work is kept and nothing partial was left behind.")

    def _space_estimate(self, stage: str) -> int:
        """Bytes a stage writes in all (the plan's estimate; from the recipe before there is a plan)."""
        if self.run.has_plan():
            return self.run.plan().estimates.disk_bytes.get(stage, 1 << 20)
        r = self.recipe
        counts = [len(c) for c in r.corners.lists()]
        n = len(plan_sounds(r.corners.names(), r.pitches, r.resolution).sounds)
        sizes = stage_bytes(n, sum(counts), len(r.pitches), r.resolution,
                            counts[0] * counts[1] * counts[2] * counts[3], r.generation.sample_length)
        return sizes.get(stage, 1 << 20)

    def _sweep_temp_files(self) -> None:
        """Temp files of a killed run (hidden ``.<name>.*.tmp``/``.part``): never finished, so removed."""
        for f in self.run.path.rglob(".*"):
            if f.is_file() and f.name.endswith((".tmp", ".part")):
                f.unlink(missing_ok=True)

    def _check_recipe(self) -> None:
        self.check_recipe_unchanged()
        atomic_write_text(self.run.recipe_path, recipe_yaml(self.recipe))

    def check_recipe_unchanged(self) -> None:
        """A run folder belongs to one recipe: another recipe is refused (a resumed run keeps its plan)."""
        stored = self.run.recipe_path
        if stored.is_file():
            try:
                old = parse_recipe(stored.read_text(), str(stored))
            except Exception:
                old = None
            if old is not None and old != self.recipe:
                raise RunError(f"{self.run.path}: this run folder was made by a different recipe "
                               f"({stored}). Set another 'output' in the recipe, or delete the folder to start over.")
