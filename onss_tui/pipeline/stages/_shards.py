"""What the shard-by-shard CPU stages (clean, pack) share: their jobs and a process pool."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.plan import Shard
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.stages.generate import die_with_parent, shard_path
from onss_tui.signals import children_ignore_interrupts, deferred, ignore_interrupts

__all__ = ["shard_jobs", "parallel"]


def shard_jobs(ctx: StageContext, src_stage: str, dst_stage: str,
               prefix: str) -> tuple[list[Shard], list[tuple[str, str]]]:
    """Every shard of the plan, and the (source, destination) of those not yet done."""
    shards = ctx.plan.shards
    jobs = []
    for s in shards:
        src = shard_path(ctx.stage_dir(src_stage), s.id)
        dst = ctx.stage_dir(dst_stage) / f"{prefix}-{s.id:05d}.npy"
        if not RunDir.is_done(dst):
            jobs.append((str(src), str(dst)))
    return shards, jobs


def _pool_worker(parent: int) -> None:
    ignore_interrupts()  # ctrl+c is the supervisor's: it stops the pool (below) and nothing half-done is marked
    die_with_parent(parent)


@contextmanager
def _children_write_to(log: Path) -> Iterator[None]:
    """Processes started in this block have ``log`` as their stderr (fd 2 is what a child inherits).
    A pool worker whose supervisor is killed while it starts reads a cut-off start message and
    prints a traceback: into ``logs/``, not onto the user's terminal."""
    sys.stderr.flush()
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(2)
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.dup2(fd, 2)
        finally:
            os.close(fd)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def parallel(fn: Callable, jobs: list[tuple], workers: int, log: Path) -> None:
    """``fn(*job)`` for every job, in ``workers`` processes whose stderr is ``log``. Interrupted
    (ctrl+c, SIGTERM) or on a job's error, the pool's processes are stopped at once; a job finishes
    or leaves no marker."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            fn(*job)
        return
    # spawned, not forked: a forked child would inherit the run lock and keep holding it if the
    # supervisor were killed, blocking the resumed run; and they die with it (an idle pool worker
    # of a killed supervisor would otherwise wait for work for ever: it holds its queue's pipe).
    # While the pool starts, a SIGTERM waits (raised half-way, it would leave workers reading a
    # start message that never comes) and ctrl+c is ignored (the children inherit that).
    ctx = multiprocessing.get_context("spawn")
    with deferred(), children_ignore_interrupts(), _children_write_to(log):
        pool = ctx.Pool(min(workers, len(jobs)), initializer=_pool_worker, initargs=(os.getpid(),))
    with pool:
        pending = [pool.apply_async(fn, job) for job in jobs]
        for result in pending:
            result.get()
    # (leaving the block terminates the pool's processes, at once, also on an exception)
