"""The jobs onss would submit to Slurm for one run: a pure layout, no ``sbatch`` needed.

Three jobs, chained by dependencies:

- **head**: prepare, plan, embed, interpolate. One GPU for the nsynth engine (so the plan measures
  precision and kernels on the workers' GPU model); CPUs only for the preview engine.
- **generate**: a job array, one task per ``slurm.gpus_per_task`` GPUs (one CPU worker a task for the
  preview engine), at most ``slurm.max_tasks`` at once. Task ``t`` runs the plan's executors
  ``t*g .. t*g+g-1`` and so the shards ``make_shards`` gives them (executor ``w`` takes shards
  ``w, w+W, ...``). Starts once the head job succeeded (``afterok``).
- **finish**: clean, pack, settings, validate, on CPUs, once every generate task ended whatever
  its state (``afterany``): it decides from the run folder's ``.done`` markers, not from Slurm.

Job ids are only known after submission, so dependencies are written symbolically
(``--dependency=afterok:{head}``); :meth:`SlurmJob.arguments` fills them in.

    jobs = lay_out_jobs(recipe, run_dir, sounds=layout.sounds, batch=layout.batch_size)
    for job in jobs.jobs:
        print(job.line())
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onss_tui.pipeline.plan import RunPlan, Shard, make_shards
from onss_tui.pipeline.rundir import STAGES
from onss_tui.recipe import Recipe, Slurm

__all__ = ["JobRole", "JOB_ROLES", "ROLE_STAGES", "TASK_MODULE", "SlurmTask", "SlurmJob", "SlurmJobs",
           "lay_out_jobs", "workers_per_task", "generate_tasks"]

JobRole = Literal["head", "generate", "finish"]
JOB_ROLES: tuple[JobRole, ...] = ("head", "generate", "finish")
ROLE_STAGES: dict[JobRole, tuple[str, ...]] = {
    "head": STAGES[:STAGES.index("generate")],
    "generate": ("generate",),
    "finish": STAGES[STAGES.index("generate") + 1:],
}
TASK_MODULE = "onss_tui.cluster.task"  # the entry point each job runs: python -m onss_tui.cluster.task RUN ROLE
PREEMPT_SIGNAL = "B:USR2@120"  # to the batch shell (the exec'd worker), 120 s before the time limit
# (without "B:" Slurm signals job steps only, and a --wrap job without srun has none but the batch shell)


@dataclass(frozen=True)
class SlurmTask:
    """One task of the generate array: its array index, the plan's executors it runs, their shards."""

    index: int
    workers: tuple[int, ...]
    shards: tuple[Shard, ...]

    @property
    def sounds(self) -> int:
        return sum(s.size for s in self.shards)


@dataclass(frozen=True)
class SlurmJob:
    """One ``sbatch`` call: its role, its arguments (dependencies as ``{head}``/``{generate}``), the
    command its wrap ``exec``s, the stages it runs and, for the array, its tasks."""

    role: JobRole
    name: str
    sbatch: tuple[str, ...]
    command: tuple[str, ...]
    stages: tuple[str, ...]
    after: tuple[str, JobRole] | None = None  # (the dependency type, the job it waits for)
    gpus_per_task: int = 0
    tasks: tuple[SlurmTask, ...] = field(default_factory=tuple)

    def arguments(self, ids: Mapping[str, str] | None = None) -> list[str]:
        """The argument list after ``sbatch``; ``ids`` (role -> job id) fills in the dependency."""
        out = list(self.sbatch)
        if ids and self.after:
            kind, role = self.after
            out = [f"--dependency={kind}:{ids[role]}" if a.startswith("--dependency=") else a for a in out]
        return out

    def line(self, ids: Mapping[str, str] | None = None) -> str:
        """The whole call as one line a shell takes as it is."""
        return shlex.join(["sbatch", *self.arguments(ids)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role, "name": self.name, "stages": list(self.stages), "sbatch": list(self.sbatch),
            "line": self.line(), "command": list(self.command),
            "after": None if self.after is None else {"type": self.after[0], "job": self.after[1]},
            "gpus_per_task": self.gpus_per_task,
            "tasks": [{"index": t.index, "workers": list(t.workers), "sounds": t.sounds,
                       "shards": [s.model_dump() for s in t.shards]} for t in self.tasks],
        }


@dataclass(frozen=True)
class SlurmJobs:
    """The run's three jobs, in submission order, and whether the shards shown are the plan's."""

    jobs: tuple[SlurmJob, ...]
    workers: int  # the plan's executors: gpus_per_task per task (nsynth), one per task (preview)
    shards_final: bool  # False: the plan, on the head job's GPU, decides the batch and so the shards

    def job(self, role: JobRole) -> SlurmJob:
        return next(j for j in self.jobs if j.role == role)

    def as_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "shards_final": self.shards_final, "jobs": [j.as_dict() for j in self.jobs]}


def workers_per_task(recipe: Recipe, slurm: Slurm) -> int:
    """Executors a generate task runs: one per GPU for the nsynth engine, one CPU worker for the preview."""
    return slurm.gpus_per_task if recipe.engine == "nsynth" else 1


def generate_tasks(recipe: Recipe, slurm: Slurm, sounds: int) -> int:
    """Tasks of the generate array before a plan exists: ``max_tasks``, fewer where there are fewer
    sounds than workers (a task with no sound would only queue)."""
    per = workers_per_task(recipe, slurm)
    return max(1, min(slurm.max_tasks, -(-sounds // per)))


def _log_pattern(run_dir: Path, array: bool) -> str:
    # Slurm expands %-patterns in --output: a '%' of the folder's own name is written %%
    logs = str(run_dir / "logs").replace("%", "%%")
    return f"{logs}/slurm-%x-%A_%a.log" if array else f"{logs}/slurm-%x-%j.log"


def _job(recipe: Recipe, slurm: Slurm, run_dir: Path, python: str, role: JobRole, gpus: int,
         array: str | None = None, after: tuple[str, JobRole] | None = None,
         tasks: tuple[SlurmTask, ...] = ()) -> SlurmJob:
    name = f"onss-{recipe.name}-{role}"
    command = (python, "-m", TASK_MODULE, str(run_dir), role)
    args = ["--parsable", f"--job-name={name}", f"--output={_log_pattern(run_dir, array is not None)}",
            f"--partition={slurm.partition}"]
    if slurm.account is not None:
        args.append(f"--account={slurm.account}")
    if slurm.qos is not None:
        args.append(f"--qos={slurm.qos}")
    args += [f"--time={slurm.time}", "--ntasks=1"]
    if gpus:
        args.append(f"--gpus-per-task={gpus}")
    if slurm.cpus_per_task is not None:
        args.append(f"--cpus-per-task={slurm.cpus_per_task}")
    if slurm.mem is not None:
        args.append(f"--mem={slurm.mem}")
    if array is not None:
        args.append(f"--array={array}")
    if after is not None:
        # a dependency that can never be met (the head job failed) cancels the job instead of
        # leaving it pending for ever; the finish job then runs and reports what is missing
        args += [f"--dependency={after[0]}:{{{after[1]}}}", "--kill-on-invalid-dep=yes"]
    args += ["--requeue", "--open-mode=append"]  # (a requeued job's log goes on after its first part)
    if role == "generate":
        args.append(f"--signal={PREEMPT_SIGNAL}")
    args += slurm.extra
    args.append("--wrap=" + shlex.join(["exec", *command]))
    return SlurmJob(role=role, name=name, sbatch=tuple(args), command=command, stages=ROLE_STAGES[role],
                    after=after, gpus_per_task=gpus, tasks=tasks)


def lay_out_jobs(recipe: Recipe, run_dir: Path, plan: RunPlan | None = None, sounds: int | None = None,
                 batch: int | None = None, python: str = "python") -> SlurmJobs:
    """The jobs for ``recipe`` (resolved: its paths absolute) writing into ``run_dir``.

    With the run's ``plan``, its shards and executors. Before there is one, ``sounds`` (and the
    ``batch`` when it is known without a GPU: the recipe's, or the preview engine's) lay the shards
    out as the plan will; with ``batch`` None each worker is shown one shard of its share, which the
    plan splits once it has measured the batch on the head job's GPU."""
    slurm = recipe.slurm
    if slurm is None:
        raise ValueError("the recipe has no slurm: section")
    per = workers_per_task(recipe, slurm)
    if plan is not None:
        shards, workers, final = list(plan.shards), len(plan.executors), True
        count = -(-workers // per)
    else:
        if sounds is None:
            raise ValueError("lay_out_jobs needs the plan or the count of sounds")
        count = generate_tasks(recipe, slurm, sounds)
        workers = count * per
        size = batch if batch is not None else max(1, -(-sounds // workers))
        shards, final = make_shards(sounds, size, workers), batch is not None
    tasks = tuple(SlurmTask(index=t, workers=tuple(range(t * per, min((t + 1) * per, workers))),
                            shards=tuple(s for s in shards if t * per <= s.worker < (t + 1) * per))
                  for t in range(count))
    gpu = 1 if recipe.engine == "nsynth" else 0
    run_dir = Path(run_dir)
    jobs = (
        _job(recipe, slurm, run_dir, python, "head", gpus=gpu),
        _job(recipe, slurm, run_dir, python, "generate", gpus=gpu * per,
             array=f"0-{count - 1}%{min(count, slurm.max_tasks)}", after=("afterok", "head"), tasks=tasks),
        _job(recipe, slurm, run_dir, python, "finish", gpus=0, after=("afterany", "generate")),
    )
    return SlurmJobs(jobs=jobs, workers=workers, shards_final=final)
