"""Snapshot tests: every screen at 80x24 with a fake GPU probe and a fixed run state.

The SVGs live in tests/__snapshots__/; after an intended change of the look, review the new
pictures and accept them with `pytest tests/test_snapshots.py --snapshot-update`. They are pinned to
the textual and rich versions in pyproject's test extra (another version draws other bytes).
README's screenshots are these files.
"""

import shutil
from pathlib import Path

import pytest

from onss_tui.gpu import GpuProbe, fake_probe
from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.runner import Runner
from onss_tui.tui.app import create_app
from tests.helpers import recipes_listed

# Paths show on some screens, so the pictures are made in one fixed folder (and, under
# pytest-xdist, by one worker).
WORK = Path("/tmp/onss-snapshots")
pytestmark = pytest.mark.xdist_group("snapshots")
SIZE = (80, 24)


@pytest.fixture(autouse=True)
def steady_cursors(monkeypatch):
    """Cursors drawn, never blinked off: a blink is a 0.5 s timer, and on a loaded machine the picture
    could be taken in either half of it (a CI run failed that way)."""
    from textual.widgets import Input, TextArea

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.setattr(TextArea, "_toggle_cursor_blink_visible", lambda self: None)


@pytest.fixture(scope="module")
def work():
    shutil.rmtree(WORK, ignore_errors=True)
    make_demo(WORK)
    yield WORK
    shutil.rmtree(WORK, ignore_errors=True)


def app_for(work, gpus=2, **kw):
    probe = (lambda: fake_probe(gpus)) if gpus else (lambda: GpuProbe(problem="no NVIDIA driver"))
    kw.setdefault("torch_status", lambda: "torch 2.13.0: CUDA 13.0, 2 device(s)" if gpus else "torch 2.13.0: no CUDA")
    kw.setdefault("checkpoint_status", lambda: "checkpoint: not installed (press d, or run onss model download)")
    kw.setdefault("disk_free", lambda folder: 52_300_000_000)
    kw.setdefault("tools_status", lambda: "slurm: no sbatch on PATH: runs are local (onss run RECIPE --slurm needs "
                  "Slurm)\naudio: libsndfile 1.2.2 (soundfile 0.14.0): MP3 works (clean: mp3)")
    kw.setdefault("bench_results", lambda: [{"device": "NVIDIA H100 80GB HBM3",
                                             "runs": [{"precision": "bf16", "batch": 4096, "samples_per_s": 3.1e6}]}])
    return create_app(probe_fn=probe, workdir=work, **kw)


async def until_tree_loaded(pilot):
    from onss_tui.tui.screens.wizard import AudioTree

    tree = pilot.app.screen.query_one(AudioTree)
    for _ in range(100):
        await pilot.pause(0.05)
        if tree.root.children:
            break
    await pilot.pause()


def test_environment(snap_compare, work):
    assert snap_compare(app_for(work), terminal_size=SIZE)


def test_environment_without_gpu(snap_compare, work):
    assert snap_compare(app_for(work, gpus=0), terminal_size=SIZE)


def test_audio(snap_compare, work):
    async def go(pilot):
        await pilot.press("ctrl+n")
        await until_tree_loaded(pilot)

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_corners(snap_compare, work):
    async def go(pilot):
        await pilot.press("ctrl+n")
        await until_tree_loaded(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_grid_with_projection(snap_compare, work):
    from textual.widgets import Select

    async def go(pilot):
        await pilot.press("ctrl+n")
        await until_tree_loaded(pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        pilot.app.screen.query_one("#engine", Select).value = "nsynth"
        await pilot.pause()

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_review(snap_compare, work):
    async def go(pilot):
        await pilot.press("ctrl+n")
        await until_tree_loaded(pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n")
        await pilot.pause()

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_settings(snap_compare, work):
    async def go(pilot):
        await pilot.press("ctrl+n")
        await until_tree_loaded(pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await pilot.pause()

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_dashboard_of_a_live_run(snap_compare, work):
    run = RunDir(work / "live")
    shutil.rmtree(run.path, ignore_errors=True)
    run.update_state(name="strings", engine="nsynth", status="running",
                     stages={s: {"status": "done"} for s in ("prepare", "embed", "interpolate", "plan")}
                     | {"generate": {"status": "running"}})
    run.emit("supervisor", "stage_start", stage="generate")
    for w, (batch, sample, rate) in enumerate([(3, 41_000, 3.05e6), (2, 12_800, 2.9e6)]):
        for k in range(1, 8):  # a short history for the sparkline
            run.emit(f"generate-w{w}", "progress", batch=batch, batches=12, sample=sample, samples=64000,
                     sounds=4096, samples_per_s=rate * (0.9 + 0.015 * k))
    assert snap_compare(app_for(work, run_dir=run.path), terminal_size=SIZE)


def test_finish(snap_compare, work):
    Runner.from_file(work / "recipes" / "demo.yaml", device="cpu").execute()

    async def go(pilot):
        pilot.app.show_finish(work / "run")
        await pilot.pause()

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_recipes(snap_compare, work):
    async def go(pilot):
        await pilot.press("ctrl+o")
        await recipes_listed(pilot)

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_stop_confirmation(snap_compare, work):
    run = RunDir(work / "live")
    run.update_state(name="strings", engine="nsynth", status="running")
    # no process holds the run, so "s" says so; the confirmation itself is drawn by pushing it
    from onss_tui.tui.screens.dashboard import ConfirmStop

    async def go(pilot):
        pilot.app.push_screen(ConfirmStop())
        await pilot.pause()

    assert snap_compare(app_for(work, run_dir=run.path), terminal_size=SIZE, run_before=go)
