"""A run on Slurm: submit its jobs, follow them, stop them. The jobs themselves: :mod:`.task`.

    jobs = submit(runner)            # under the run's lease; prints nothing
    outcome = follow(run_dir, print) # the events as they come, until the run folder says done/failed
    stop(run_dir)                    # scancel every job of the run, wait until they left the queue

Submitting again while the run's jobs live submits nothing (the lease refuses); after a failure
or a stop it submits only what the run folder lacks: the head job only while a head stage is not
done, generate tasks only for tasks with unfinished shards, and always a finish job.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onss_tui.cluster import scheduler
from onss_tui.cluster.record import (
    ClusterShape,
    LeaseHeld,
    SlurmRecord,
    Submission,
    read_lease,
    read_record,
    release_lease,
    take_lease,
    update_lease,
    write_record,
)
from onss_tui.cluster.slurm import ROLE_STAGES, SlurmJob, generate_tasks, lay_out_jobs, workers_per_task
from onss_tui.pipeline.context import RunError
from onss_tui.pipeline.grid import plan_sounds
from onss_tui.pipeline.plan import Cluster
from onss_tui.pipeline.rundir import RunDir
from onss_tui.recipe import Recipe

__all__ = ["slurm_side", "job_lines", "Submitted", "submit", "submit_missing", "follow", "stop", "live_jobs",
           "MAX_RESUBMITS", "LeaseHeld", "missing_tasks", "cluster_of"]

MAX_RESUBMITS = 2  # the finish job resubmits missing shards this many times, then fails with the reason
STOP_WAIT_S = 60.0
FOLLOW_PATIENCE_S = 300.0  # --wait gives up on a slurmctld that has not answered squeue for this long


@dataclass(frozen=True)
class Submitted:
    jobs: dict[str, str]  # role -> job id
    tasks: list[int]  # the generate array's indices
    lines: list[str]  # the sbatch calls made
    redo: tuple[str, str] | None = None  # a done run's first stale stage, and why (what made it submit)


def cluster_of(run: Path) -> Cluster:
    """The generate array's shape the run's plan follows (slurm.json)."""
    record = read_record(run)
    if record is None:
        raise RunError(f"{run}: no slurm.json: this run folder was not submitted to Slurm by onss.")
    return Cluster(record.shape.tasks, record.shape.per_task)


def live_jobs(run: Path) -> list[scheduler.QueuedJob]:
    """The run's jobs still in the queue (every submission's), as squeue lists them."""
    record = read_record(run)
    return scheduler.squeue(record.job_ids()) if record else []


def _alive(ids: Any) -> list[str]:
    return sorted({j.array_id for j in scheduler.squeue(ids) if j.alive})


def missing_tasks(run: RunDir, tasks: int) -> list[int]:
    """The generate tasks with a shard their plan gives them that no done marker certifies."""
    from onss_tui.pipeline.stages.generate import shard_path

    plan = run.plan()
    out_dir = run.path / "generate"
    task_of = {e.index: e.task for e in plan.executors}
    return sorted({t for s in plan.shards if (t := task_of[s.worker]) is not None
                   and not RunDir.is_done(shard_path(out_dir, s.id))} & set(range(tasks)))


def _array(tasks: list[int], at_once: int) -> str:
    return ",".join(map(str, tasks)) + f"%{max(1, min(at_once, len(tasks)))}"


def _arguments(job: SlurmJob, ids: dict[str, str], array: str | None = None) -> list[str]:
    """``job``'s sbatch arguments with its dependency on a job submitted now (or none, where that
    job was not needed) and the array's indices."""
    out = []
    for a in job.sbatch:
        if a.startswith("--dependency="):
            assert job.after is not None
            kind, role = job.after
            if role in ids:
                out.append(f"--dependency={kind}:{ids[role]}")
            elif job.role == "finish" and "head" in ids:  # no generate task needed: after the head job
                out.append(f"--dependency=afterany:{ids['head']}")
            continue
        if a.startswith("--array=") and array is not None:
            out.append(f"--array={array}")
            continue
        out.append(a)
    if not any(o.startswith("--dependency=") for o in out):
        out = [o for o in out if o != "--kill-on-invalid-dep=yes"]
    return out


def _sbatch_all(run: Path, jobs: list[tuple[SlurmJob, str | None]], by: str, tasks: list[int],
                record: SlurmRecord) -> Submitted:
    """Submit ``jobs`` in order (each after the one it depends on); all or none: a refusal cancels
    what was submitted before it."""
    ids: dict[str, str] = {}
    lines = []
    (run / "logs").mkdir(exist_ok=True)  # (Slurm does not make the folder of --output: the job would fail)
    try:
        for job, array in jobs:
            args = _arguments(job, ids, array)
            ids[job.role] = scheduler.sbatch(args)
            lines.append("sbatch " + " ".join(args))
            update_lease(run, [ids[job.role]])  # the lease names each job as soon as it exists
    except BaseException:
        scheduler.scancel(ids.values())
        raise
    record.submissions.append(Submission(at=time.time(), by=by, jobs=ids, tasks=tasks))
    write_record(run, record)
    RunDir(run).emit("slurm", "submitted", by=by, jobs=ids, tasks=tasks)
    return Submitted(ids, tasks, lines)


def _shape(recipe: Recipe, run: RunDir) -> ClusterShape:
    """The generate array's shape: kept from an earlier submission once the plan follows it."""
    slurm = recipe.slurm
    assert slurm is not None
    record = read_record(run.path)
    if run.has_plan():
        plan = run.plan()
        if any(e.kind != "slurm" for e in plan.executors):
            raise RunError(f"{run.path}: this run was planned for this machine's workers; resume it here with "
                           "onss run RECIPE (or set another 'output' to start it over on Slurm).")
        tasks = max(e.task or 0 for e in plan.executors) + 1
        return ClusterShape(tasks=tasks, per_task=len(plan.executors) // tasks)
    if record is not None and record.submissions and read_lease(run.path) is not None:
        return record.shape
    sounds = len(plan_sounds(recipe.corners.names(), recipe.pitches, recipe.resolution).sounds)
    return ClusterShape(tasks=generate_tasks(recipe, slurm, sounds), per_task=workers_per_task(recipe, slurm))


def submit(runner: Any, python: str | None = None) -> Submitted | None:
    """Submit what the run lacks (None: nothing, it is done). ``runner``: the run's Runner (its
    recipe resolved, with a ``slurm:`` section). Raises LeaseHeld while its jobs live."""
    from onss_tui.pipeline.dryrun import _checked

    recipe: Recipe = runner.recipe
    run: RunDir = runner.run
    if recipe.slurm is None:
        raise RunError("the recipe has no slurm: section")
    why = scheduler.available()
    if why:
        raise scheduler.SlurmError(f"cannot submit to Slurm: {why}.")
    _checked(runner)  # every check a local run makes first (the notes included), before any job
    pid = run.locked_by()
    if pid:
        raise RunError(f"{run.path}: a local onss run (pid {pid}) is working on this folder. Stop it first: "
                       f"onss stop {run.path}")
    runner._check_paths()
    take_lease(run.path, _alive)
    submitted = None
    try:
        runner._check_recipe()  # the run's recipe.yaml, which every job reads
        redo = None
        if run.state().status == "done":  # verified as a local rerun would: notes, recipe, every output
            redo = runner.verify_done()
            if redo is None:
                return None
        shape = _shape(recipe, run)
        record = read_record(run.path)
        record = SlurmRecord(shape=shape, submissions=record.submissions if record else [])
        write_record(run.path, record)
        sounds = len(plan_sounds(recipe.corners.names(), recipe.pitches, recipe.resolution).sounds)
        layout = lay_out_jobs(recipe, run.path, plan=run.plan() if run.has_plan() else None, sounds=sounds,
                              python=python or sys.executable)
        state = run.state()
        head = any(state.stage(s).status != "done" for s in ROLE_STAGES["head"]) or not run.has_plan()
        tasks = list(range(shape.tasks)) if not run.has_plan() else missing_tasks(run, shape.tasks)
        slurm = recipe.slurm
        jobs: list[tuple[SlurmJob, str | None]] = []
        if head:
            jobs.append((layout.job("head"), None))
        if tasks:
            jobs.append((layout.job("generate"), _array(tasks, slurm.max_tasks)))
        jobs.append((layout.job("finish"), None))
        if not head and state.stage("generate").status != "done":
            run.set_stage("generate", "pending")
        run.update_state(status="running", name=recipe.name, engine=recipe.engine)
        submitted = dataclasses.replace(_sbatch_all(run.path, jobs, "user", tasks, record), redo=redo)
        from onss_tui import registry

        registry.register(run.path, recipe.name, getattr(runner, "recipe_file", None), slurm=True)
        return submitted
    finally:
        if submitted is None:
            release_lease(run.path)


def submit_missing(run: RunDir, python: str | None = None) -> Submitted | None:
    """The finish job's resubmission: generate tasks for the shards still missing and a finish job
    after them; None once MAX_RESUBMITS were made since the user's submission."""
    from onss_tui.pipeline.runner import Runner

    record = read_record(run.path)
    assert record is not None
    if record.resubmissions() >= MAX_RESUBMITS:
        return None
    runner = Runner.from_run_dir(run.path)
    tasks = missing_tasks(run, record.shape.tasks)
    assert runner.recipe.slurm is not None
    layout = lay_out_jobs(runner.recipe, run.path, plan=run.plan(), python=python or sys.executable)
    jobs: list[tuple[SlurmJob, str | None]] = [(layout.job("generate"), _array(tasks, runner.recipe.slurm.max_tasks)),
                                               (layout.job("finish"), None)]
    return _sbatch_all(run.path, jobs, "finish", tasks, record)


# --------------------------------------------------------------------------------------------
# following and stopping


Listener = Callable[[dict[str, Any]], None]


def follow(run_path: Path, listener: Listener, poll_s: float = 2.0, since_now: bool = True) -> str:
    """Pass the run's events to ``listener`` as they come, until the run folder says it is done
    ("done") or its jobs have all left the queue without that ("failed", "stopped")."""
    run = RunDir(run_path)
    reader = run.event_reader()
    if since_now:
        reader.read()
    gone_polls = failed_polls = 0
    while True:
        for e in reader.read():
            listener(e)
        status = run.state().status
        if status == "done":
            _until_gone(run, poll_s)  # (the finish job writes "done", then still has to exit)
            return "done"
        record = read_record(run.path)
        try:
            alive = _alive(record.job_ids() if record else [])
            failed_polls = 0
        except scheduler.SlurmError:  # a busy slurmctld times out now and then: ask again
            failed_polls += 1
            if failed_polls * poll_s > FOLLOW_PATIENCE_S:
                raise
            time.sleep(poll_s)
            continue
        if not alive:
            gone_polls += 1  # (the last events may still be on their way through a shared file system)
            if gone_polls >= 3:
                for e in reader.read():
                    listener(e)
                status = run.state().status
                return "done" if status == "done" else "stopped" if status == "stopped" else "failed"
        else:
            gone_polls = 0
        time.sleep(poll_s)


def _until_gone(run: RunDir, poll_s: float, patience_s: float = STOP_WAIT_S) -> None:
    """Wait (a bounded time) until the run's jobs have left the queue: a --wait that returns leaves
    no job of the run behind it."""
    record = read_record(run.path)
    ids = record.job_ids() if record else []
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        try:
            if not _alive(ids):
                return
        except scheduler.SlurmError:
            pass
        time.sleep(min(poll_s, 0.5))


def stop(run_path: Path) -> list[str]:
    """Cancel every job of the run and wait (a minute at most) until they left the queue; the
    lease is released and the run says stopped. The ids that were alive."""
    run = RunDir(run_path)
    record = read_record(run.path)
    ids = record.job_ids() if record else []
    alive = _alive(ids)
    scheduler.scancel(ids)
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _alive(ids)
    if left:
        raise scheduler.SlurmError(f"jobs {', '.join(left)} are still in the queue {STOP_WAIT_S:.0f} s after scancel; "
                                   "see 'squeue'. Run onss stop again once they are gone.")
    release_lease(run.path)
    if run.state().status != "done":
        run.update_state(status="stopped")
    run.emit("slurm", "stopped", jobs=alive)
    return alive


def slurm_side(run_path: Path) -> dict[str, Any] | None:
    """A Slurm run's jobs as squeue has them, for viewers (None: not a Slurm run): each queued job
    or array task with its role, state, pending reason, expected start and node."""
    record = read_record(run_path)
    if record is None:
        return None
    out: dict[str, Any] = {"submissions": len(record.submissions), "jobs": [],
                           "lease": read_lease(run_path) is not None}
    try:
        queued = scheduler.squeue(record.job_ids())
    except scheduler.SlurmError as exc:
        out["error"] = str(exc)
        return out
    for j in queued:
        out["jobs"].append({"role": record.role_of(j.array_id) or "?", "job": j.array_id, "task": j.task,
                            "state": j.state, "reason": j.reason, "start": j.start, "node": j.node})
    return out


def job_lines(slurm: dict[str, Any]) -> list[str]:
    """``slurm_side``'s jobs in words, one a line (the CLI's status and the dashboard)."""
    if "error" in slurm:
        return [f"Slurm: {slurm['error']}"]
    if not slurm["jobs"]:
        return [f"Slurm: no job of this run is queued ({slurm['submissions']} submission(s) so far)"]
    lines = ["Slurm jobs:"]
    for j in slurm["jobs"]:
        name = j["job"] + (f"_{j['task']}" if j["task"] is not None else "")
        if j["state"] == "PENDING":
            when = f", expected start {j['start']}" if j["start"] not in ("N/A", "", "Unknown") else ""
            detail = f"pending ({j['reason']}{when})"
        else:
            detail = j["state"].lower() + (f" on {j['node']}" if j["node"] else "")
        lines.append(f"  {j['role']:9s} {name:12s} {detail}")
    return lines
