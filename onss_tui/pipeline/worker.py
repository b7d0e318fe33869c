"""A generate worker process: ``python -m onss_tui.pipeline.worker RUN_DIR WORKER``.

The supervisor starts one per GPU (``CUDA_VISIBLE_DEVICES`` set to that GPU); it reads the
run directory, generates the shards assigned to it that are not done yet, and reports on
``events/generate-w<WORKER>.jsonl``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from onss_tui.pipeline.generate import run_worker
from onss_tui.pipeline.interpolate import load_shards
from onss_tui.pipeline.runner import Runner


def main(argv: list[str]) -> int:
    run_dir, worker = Path(argv[0]), int(argv[1])
    runner = Runner.from_run_dir(run_dir)
    shards = load_shards(runner.run.stage_dir("plan") / "shards.json")
    g = runner.recipe.generation
    run_worker(runner.run, worker, shards, runner.recipe.engine, runner._worker_inputs, g.seed, g.save_every)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
