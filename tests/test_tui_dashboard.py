"""The dashboard as a user meets it (Pilot, 80x24): the whole run's progress, a stopped run's
stage, the resume key, leaving with escape or ctrl+b. Real run folders, real runs."""

from __future__ import annotations

import time

from textual.widgets import DataTable, Label, ProgressBar

from onss_tui.gpu import GpuProbe
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.runner import Runner
from onss_tui.tui.app import create_app
from onss_tui.tui.screens.dashboard import DashboardScreen
from tests.helpers import small_recipe, write_notes

SIZE = (80, 24)


def app_for(run_dir):
    return create_app(run_dir=run_dir, probe_fn=lambda: GpuProbe(problem="no NVIDIA driver"),
                      torch_status=lambda: "torch: no CUDA", checkpoint_status=lambda: "checkpoint: not needed")


def stopped_run(folder):
    """A run stopped before its first stage: its recipe in the folder, its state still 'running'."""
    write_notes(folder / "audio", "abcd", [60, 64])
    runner = Runner.from_file(small_recipe(folder))
    runner.run.path.mkdir()
    runner._check_recipe()
    runner.run.update_state(status="running", name="small", engine="preview",
                            stages={"prepare": {"status": "running"}})
    return runner.run


async def test_the_whole_run_progress_and_the_share_of_each_worker(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update_state(name="live", engine="nsynth", status="running",
                     stages={"generate": {"status": "running", "at": time.time() - 125}})
    (tmp_path / "run" / "plan.json").write_text("{}")  # (unreadable as a plan: the shard count stays unknown)
    app = app_for(run.path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen._shards = 8  # (as the plan says)
        for shard in (0, 1):
            out = run.stage_dir("generate") / f"shard-{shard:05d}.npy"
            out.write_bytes(b"x")
            RunDir.mark_done(out)
        screen.show_run(screen.read_run())
        await pilot.pause()
        text = str(screen.query_one("#run-progress-text", Label).render())
        assert text.startswith("generate: 2/8 shards  25%  elapsed 2:0"), text
        bar = screen.query_one("#run-progress", ProgressBar)
        assert (bar.progress, bar.total) == (2, 8)


async def test_a_stopped_run_says_so_and_r_resumes_it(tmp_path):
    run = stopped_run(tmp_path)
    app = app_for(run.path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen.show_run(screen.read_run())
        await pilot.pause()
        assert "interrupted: r resumes it" in str(screen.query_one("#run-title", Label).render())
        await pilot.press("r")
        for _ in range(600):
            await pilot.pause(0.1)
            if run.state().status == "done":
                break
        assert run.state().status == "done" and (run.path / "settings.json").is_file()
        screen.show_run(screen.read_run())
        await pilot.pause()
        table = screen.query_one("#stages", DataTable)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["done"] * 9


async def test_escape_and_ctrl_b_leave_the_dashboard_and_the_run_goes_on(tmp_path):
    run = stopped_run(tmp_path)
    app = app_for(run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "RecipesScreen"
        app.push_screen(DashboardScreen(run.path))
        await pilot.pause()
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert type(app.screen).__name__ == "RecipesScreen"
    assert run.state().status == "running"  # (leaving never touches the run)


async def test_finish_shows_the_verdict_first_and_enter_or_ctrl_d_in_the_mount_box_deploys(tmp_path):
    """The verdict and the paths sit at the top, above the details; with the focus in the mount box
    enter deploys, and ctrl+d too (an Input would take it for itself); a second deploy says the card
    already has the pack."""
    from textual.widgets import Input, Static

    from onss_tui.device.deploy import APP_DATA
    from onss_tui.pipeline.demo import make_demo
    from onss_tui.tui.screens.finish import FinishScreen

    Runner.from_file(make_demo(tmp_path), device="cpu").execute()
    run = tmp_path / "run"
    card = tmp_path / "card"
    (card / APP_DATA).mkdir(parents=True)
    (card / APP_DATA / "settings.json").write_text('{"old": true}')
    app = app_for(None)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(FinishScreen(run))
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        verdict = screen.query_one("#verdict", Static)
        assert str(verdict.render()).startswith("VALID: 0 errors") and verdict.region.y <= 3
        assert screen.query_one("#mount").region.bottom <= screen.query_one("#details").region.y
        screen.query_one("#mount", Input).focus()
        await pilot.press(*str(card))
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "deployed: 1 pads copied" in str(screen.query_one("#deploy-result", Static).render())
        assert (card / APP_DATA / "settings.json").read_bytes() == (run / "settings.json").read_bytes()
        await pilot.press("ctrl+d")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "already has this pack" in str(screen.query_one("#deploy-result", Static).render())


async def test_finish_offers_the_audition(tmp_path):
    from textual.widgets import Static

    from onss_tui.pipeline.demo import make_demo
    from onss_tui.tui.screens.finish import FinishScreen

    Runner.from_file(make_demo(tmp_path), device="cpu").execute()
    run = tmp_path / "run"
    app = app_for(None)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(FinishScreen(run))
        await pilot.pause()
        await pilot.press("ctrl+a")
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = str(app.screen.query_one("#deploy-result", Static).render())
        assert "audition:" in text and "scp -r" in text
    assert (run / "audition" / "index.html").is_file()
