"""A generate worker process: ``python -m onss_tui.pipeline.worker RUN_DIR WORKER``.

The supervisor starts one per executor of the plan (its GPU in ``CUDA_VISIBLE_DEVICES``). It reads
only the run folder: ``plan.json`` for its shards and every setting, the engine's inputs, the
done markers; it generates its shards that are not done yet and reports on
``events/generate-w<WORKER>.jsonl``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from onss_tui.pipeline.engines import engine_for
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.stages.generate import run_worker
from onss_tui.signals import Preempted, ignore_interrupts, request_preemption

EXIT_PREEMPTED = 75  # stopped on USR2 with its state saved (a Slurm task requeues itself then)


def main(argv: list[str]) -> int:
    ignore_interrupts()  # ctrl+c is the supervisor's: it stops this worker (SIGTERM) before it stops
    run = RunDir(Path(argv[0]))
    worker = int(argv[1])
    plan = run.plan()
    engine = engine_for(plan, plan.executor(worker).device)
    signal.signal(signal.SIGUSR2, request_preemption)  # (from a Slurm task: its job is about to stop)
    try:
        run_worker(run, plan, worker, engine)
    except Preempted:
        return EXIT_PREEMPTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
