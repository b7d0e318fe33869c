#!/usr/bin/env python3
"""The wizard's pictures in docs/guide.md: each screen at 80x24, drawn by Textual's Pilot and saved
as SVG (``app.export_screenshot()``) beside this file.

    python docs/images/screenshots.py

The app sees the demo's notes (``onss demo``'s four synthetic instruments) and a fake two-GPU
probe, as the snapshot tests do (tests/test_snapshots.py), so the pictures are the same on any
machine. Run it again after the look of a screen changes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the checkout's onss_tui
SIZE = (80, 24)
WORK = Path(tempfile.gettempdir()) / "onss-guide"  # shows in some pictures: one fixed folder


def _app(work: Path, **kw):
    from onss_tui.gpu import fake_probe
    from onss_tui.tui.app import create_app

    kw.setdefault("torch_status", lambda: "torch 2.13.0: CUDA 13.0, 2 device(s)")
    kw.setdefault("checkpoint_status", lambda: "checkpoint: not installed (press d, or run onss model download)")
    kw.setdefault("disk_free", lambda folder: 52_300_000_000)
    kw.setdefault("bench_results", lambda: [{"device": "NVIDIA H100 80GB HBM3",
                                             "runs": [{"precision": "bf16", "batch": 4096, "samples_per_s": 3.1e6}]}])
    return create_app(probe_fn=lambda: fake_probe(2), workdir=work, **kw)


async def _settle(pilot, times: int = 3) -> None:
    for _ in range(times):
        await pilot.pause(0.1)


async def _tree_loaded(pilot) -> None:
    from onss_tui.tui.screens.wizard import AudioTree

    tree = pilot.app.screen.query_one(AudioTree)
    for _ in range(100):
        await pilot.pause(0.05)
        if tree.root.children:
            break
    await _settle(pilot)


async def _shoot(app, name: str, title: str, steps=None) -> Path:
    # a state folder of its own: no draft autosaved by an earlier picture (or by you) shows up
    os.environ["ONSS_STATE_DIR"] = str(WORK / "state" / name)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        if steps is not None:
            await steps(pilot)
        await _settle(pilot)
        svg = app.export_screenshot(title=title)
    out = HERE / f"{name}.svg"
    out.write_text(svg, encoding="utf-8")
    return out


async def main() -> None:
    from textual.widgets import Input, TextArea

    from onss_tui.pipeline.demo import make_demo
    from onss_tui.pipeline.rundir import RunDir
    from onss_tui.pipeline.runner import Runner

    Input._toggle_cursor = lambda self: None  # cursors drawn, never blinked off mid-picture
    TextArea._toggle_cursor_blink_visible = lambda self: None
    shutil.rmtree(WORK, ignore_errors=True)
    os.environ["ONSS_STATE_DIR"] = str(WORK / "state" / "setup")  # the demo run stays out of `onss ls`
    make_demo(WORK)

    async def corners(pilot):
        await pilot.press("ctrl+n")
        await _tree_loaded(pilot)
        await pilot.press("ctrl+n")

    async def review(pilot):
        await pilot.press("ctrl+n")
        await _tree_loaded(pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n")

    async def settings(pilot):
        await pilot.press("ctrl+n")
        await _tree_loaded(pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")

    run = RunDir(WORK / "live")
    run.update_state(name="strings", engine="nsynth", status="running",
                     stages={s: {"status": "done"} for s in ("prepare", "plan", "embed", "interpolate")}
                     | {"generate": {"status": "running"}})
    run.emit("supervisor", "stage_start", stage="generate")
    for w, (batch, sample, rate) in enumerate([(3, 41_000, 3.05e6), (2, 12_800, 2.9e6)]):
        for k in range(1, 8):  # a short history for the sparkline
            run.emit(f"generate-w{w}", "progress", batch=batch, batches=12, sample=sample, samples=64000,
                     sounds=4096, samples_per_s=rate * (0.9 + 0.015 * k))

    Runner.from_file(WORK / "recipes" / "demo.yaml", device="cpu").execute()
    # the live run's plan: the demo's, as 24 shards of 4,096 sounds on the two GPUs, 3 of them done
    from onss_tui.atomic import atomic_write_text
    from onss_tui.pipeline.plan import make_shards

    plan = RunDir(WORK / "run").plan()
    plan = plan.model_copy(update={"engine": "nsynth", "sounds": 24 * 4096, "shards": make_shards(24 * 4096, 4096, 2)})
    atomic_write_text(run.plan_path, plan.model_dump_json())
    (run.path / "generate").mkdir(exist_ok=True)
    for shard in range(3):
        (run.path / "generate" / f"shard-{shard:05d}.npy.done").write_text("{}")

    async def finish(pilot):
        pilot.app.show_finish(WORK / "run")
        await _settle(pilot, 10)

    shots = [
        ("environment", "onss: environment", None, {}),
        ("corners", "onss: corners", corners, {}),
        ("settings", "onss: settings", settings, {}),
        ("review", "onss: review", review, {}),
        ("dashboard", "onss: dashboard", None, {"run_dir": run.path}),
        ("finish", "onss: finish", finish, {}),
    ]
    for name, title, steps, kw in shots:
        if "run_dir" in kw:
            with run.lock():  # this process plays the run's supervisor: the dashboard shows it running
                print(await _shoot(_app(WORK, **kw), name, title, steps))
        else:
            print(await _shoot(_app(WORK, **kw), name, title, steps))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
