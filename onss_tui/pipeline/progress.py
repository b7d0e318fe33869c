"""The whole run's progress in one reading of its folder: percentage, elapsed time, time left.

Generation is nearly all of a run's time, so it weighs 85 of the 100 points: the stages before it
5, the stages after it 10. The time left is the pace of the shards finished since the generate
stage (re)started, applied to the shards still to do; None until one has finished.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from onss_tui.pipeline.rundir import STAGES, RunDir

__all__ = ["Progress", "progress_of", "clock"]

BEFORE, GENERATE, AFTER = 5.0, 85.0, 10.0


def clock(seconds: float) -> str:
    """H:MM:SS, or M:SS under an hour."""
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class Progress:
    percent: float
    shards_done: int
    shards: int | None  # None before the plan
    elapsed_s: float | None  # since the run last started
    eta_s: float | None
    took_s: float | None = None  # a finished run: from its last start to its end

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress_of(run: RunDir, now: float | None = None) -> Progress:
    now = time.time() if now is None else now
    state = run.state()
    gi = STAGES.index("generate")
    before = sum(state.stage(s).status == "done" for s in STAGES[:gi]) / gi
    after = sum(state.stage(s).status == "done" for s in STAGES[gi + 1:]) / (len(STAGES) - gi - 1)
    shards = None
    if run.has_plan():
        try:
            shards = len(run.plan().shards)
        except (OSError, ValueError):
            shards = None
    folder = run.path / "generate"
    done = sum(1 for _ in folder.glob("shard-*.npy.done")) if folder.is_dir() else 0
    gen = state.stage("generate")
    fraction = 1.0 if gen.status == "done" else (min(done / shards, 1.0) if shards else 0.0)
    percent = round(BEFORE * before + GENERATE * fraction + AFTER * after, 1)
    if state.status == "done":
        percent = 100.0
    supervisor = run.events(streams=("supervisor",))
    starts = [e["t"] for e in supervisor if e["event"] == "run_start"]
    elapsed = now - starts[-1] if starts and state.status == "running" else None
    ends = [e["t"] for e in supervisor if e["event"] == "run_done"]
    took = ends[-1] - starts[-1] if state.status == "done" and starts and ends and ends[-1] >= starts[-1] else None
    eta = None
    if gen.status == "running" and gen.at and shards:
        finished = [e["t"] for e in run.events(streams=("generate-w",))
                    if e["event"] == "shard_done" and e["t"] >= gen.at]
        if finished:
            pace = (max(finished) - gen.at) / len(finished)
            eta = pace * (shards - done)
    return Progress(percent, done, shards, elapsed, eta, took)
