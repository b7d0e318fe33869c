"""What each Slurm job runs: ``python -m onss_tui.cluster.task RUN_DIR ROLE``.

- ``head``: prepare, plan, embed, interpolate (the plan lays its executors over the generate
  array's tasks, as slurm.json records them, and measures on this job's GPU).
- ``generate``: one array task (``SLURM_ARRAY_TASK_ID``) runs the plan's executors of that task,
  one per GPU Slurm gave it (``CUDA_VISIBLE_DEVICES``, in order), and generates their unfinished
  shards. On USR2 (``--signal=B:USR2@120``: the time limit is near, or the job is preempted) the
  workers finish the stride under way, save the generator's state, and the task requeues itself
  (``scontrol requeue``): it starts again later and resumes from that save, bit-identically.
- ``finish``: generate's check (every shard certified by its done marker; missing ones are
  resubmitted, a bounded number of times), then clean, pack, settings, validate. It releases the
  run's lease when the run is done or has failed.

Every job reads only the run folder; none takes the run's flock (the lease holds the run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from onss_tui.cluster import scheduler
from onss_tui.cluster.record import release_lease
from onss_tui.cluster.slurm import ROLE_STAGES
from onss_tui.cluster.submit import MAX_RESUBMITS, cluster_of, missing_tasks, submit_missing
from onss_tui.pipeline.context import RunError, StageContext
from onss_tui.pipeline.rundir import RunDir
from onss_tui.signals import Preempted, preemption_requested, request_preemption

__all__ = ["main", "collect"]

EXIT_REQUEUED = 0  # a requeued task ended as asked: not a failure
EXIT_PREEMPTED = 75  # a worker of a task stopped for a requeue (EX_TEMPFAIL)


def _print(record: dict) -> None:
    print(json.dumps(record), flush=True)  # the job's log: one event a line


def _machine(cluster):
    """This node, as the plan may use it: the first GPU Slurm gave the job (NVML numbers them all)."""
    from onss_tui.gpu import GpuProbe
    from onss_tui.pipeline.plan import Machine

    machine = Machine.detect()
    visible = (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",")[0]
    gpus = machine.gpus.gpus
    if visible.isdigit():
        gpus = [g for g in gpus if g.index == int(visible)] or gpus[:1]
    machine.gpus = GpuProbe(machine.gpus.driver, machine.gpus.cuda_driver, gpus[:1], machine.gpus.problem)
    machine.cluster = cluster
    return machine


def collect(ctx: StageContext) -> dict:
    """The finish job's generate stage: the run goes on only once every shard is certified done.
    Missing ones are resubmitted (generate tasks and a new finish job after them), at most
    MAX_RESUBMITS times since the user's submission; then the run fails saying which and why."""
    from onss_tui.pipeline.runner import Deferred

    plan = ctx.plan
    cluster = cluster_of(ctx.run.path)
    tasks = missing_tasks(ctx.run, cluster.tasks)
    if not tasks:
        return {"shards": len(plan.shards)}
    submitted = submit_missing(ctx.run)
    if submitted is None:
        raise RunError(f"{ctx.run.path}: generate tasks {', '.join(map(str, tasks))} did not finish their shards "
                       f"after {MAX_RESUBMITS} resubmissions; see {ctx.run.path / 'logs'} "
                       "(slurm-*-generate-*.log) for why, fix it, and run onss run RECIPE --slurm again: it "
                       "submits only what is missing.")
    raise Deferred(f"generate tasks {', '.join(map(str, tasks))} had unfinished shards: resubmitted them (job "
                   f"{submitted.jobs['generate']}) and a finish job after them ({submitted.jobs['finish']})")


def _requeue_self() -> int:
    # an array task by <array>_<index>: its own SLURM_JOB_ID may be the array's id, and requeueing
    # that requeues every task of the array (a cancelled one included)
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{index}" if array and index else os.environ.get("SLURM_JOB_ID")
    if job:
        print(f"onss: preempted: state saved; requeueing job {job}", flush=True)
        scheduler.requeue(job)
        time.sleep(30)  # (Slurm ends this job now; it starts again from the queue)
    return EXIT_REQUEUED


def _generate(run: RunDir, task: int) -> int:
    from onss_tui.pipeline.engines import engine_for
    from onss_tui.pipeline.stages.generate import run_worker

    if os.environ.get("ONSS_FAULT_FAIL_TASK") == str(task):  # tests: a task that always fails
        print(f"onss: task {task} fails (injected: ONSS_FAULT_FAIL_TASK)", flush=True)
        return 1
    plan = run.plan()
    mine = [e for e in plan.executors if e.task == task]
    if not mine:
        print(f"onss: task {task}: the plan gives it no executor", flush=True)
        return 0
    signal.signal(signal.SIGUSR2, request_preemption)
    if len(mine) == 1:
        engine = engine_for(plan, mine[0].device)
        try:
            run_worker(run, plan, mine[0].index, engine)
        except Preempted:
            return _requeue_self()
        finally:
            engine.release()
        return 0
    gpus = (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",")
    procs = []
    logs = run.path / "logs"
    logs.mkdir(exist_ok=True)
    for e in mine:
        env = dict(os.environ)
        if e.device != "cpu" and e.slot is not None and e.slot < len(gpus):
            env["CUDA_VISIBLE_DEVICES"] = gpus[e.slot]
        with open(logs / f"worker-{e.index}.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "onss_tui.pipeline.worker", str(run.path),
                                           str(e.index)], stdout=log, stderr=subprocess.STDOUT, env=env))

    def forward(signum: int, frame: object) -> None:
        request_preemption()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR2)

    signal.signal(signal.SIGUSR2, forward)
    codes = [p.wait() for p in procs]
    if preemption_requested() or EXIT_PREEMPTED in codes:
        return _requeue_self()
    return max(codes)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ROLE_STAGES:
        print("usage: python -m onss_tui.cluster.task RUN_DIR head|generate|finish", file=sys.stderr)
        return 2
    run_path, role = Path(argv[0]), argv[1]
    run = RunDir(run_path)
    if role == "generate":
        return _generate(run, int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")))

    from onss_tui.pipeline.runner import Runner

    cluster = cluster_of(run_path)
    runner = Runner.from_run_dir(run_path, listener=_print, cluster=cluster, machine=_machine(cluster))
    if role == "head":
        try:
            runner.execute(stages=ROLE_STAGES["head"], lock=False)
        except RunError as exc:  # (the generate array, waiting on this job's success, is cancelled)
            print(f"onss: error: {exc}", flush=True)
            return 1
        return 0
    deferred = False

    def note(record: dict) -> None:
        nonlocal deferred
        deferred = deferred or record.get("event") == "run_deferred"
        _print(record)

    runner.listener = note
    try:
        runner.execute(stages=("generate", *ROLE_STAGES["finish"]), functions={"generate": collect}, lock=False)
    except RunError as exc:
        print(f"onss: error: {exc}", flush=True)
        return 1
    finally:
        if not deferred:
            release_lease(run_path)  # done or failed: the run is free for the next submission
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
