"""The Textual app: environment and dashboard screens, driven by the pilot at 80x24."""

import subprocess
import sys

import pytest
from textual.widgets import DataTable, Label, Log, ProgressBar, Static

from onss_tui.gpu import GpuProbe, fake_probe, probe
from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.rundir import RunDir
from onss_tui.pipeline.runner import Runner
from onss_tui.tui.app import create_app
from onss_tui.tui.screens.dashboard import DashboardScreen
from tests.helpers import recipes_listed

SIZE = (80, 24)


def app_for(**kw):
    kw.setdefault("torch_status", lambda: "torch 2.13.0: no CUDA")
    kw.setdefault("checkpoint_status", lambda: "checkpoint: not installed (press d, or run onss model download)")
    return create_app(**kw)


def test_probe_without_a_driver_is_a_state_not_an_error():
    p = probe()  # this machine has no NVIDIA driver; a GPU box would list its GPUs
    assert isinstance(p, GpuProbe)
    if not p.available:
        assert "no GPU" in p.summary() and "preview engine" in p.summary()


async def test_environment_with_gpus(tmp_path):
    app = app_for(probe_fn=lambda: fake_probe(2), workdir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        summary = str(screen.query_one("#gpu-summary", Static).render())
        assert "2 GPUs: NVIDIA H100 80GB HBM3 (driver 580.65.06)" in summary
        table = screen.query_one("#gpus", DataTable)
        assert table.row_count == 2 and table.display
        assert "87%" in [str(c) for c in table.get_row_at(0)]
        assert "not installed" in str(screen.query_one("#checkpoint", Static).render())


async def test_environment_without_gpu(tmp_path):
    app = app_for(probe_fn=lambda: GpuProbe(problem="no NVIDIA driver"), workdir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#gpu-summary", Static).render())
        assert "no GPU (no NVIDIA driver): preview engine only" in text
        assert not app.screen.query_one("#gpus", DataTable).display
        await pilot.press("q")
    assert app.return_code == 0


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tui")
    Runner.from_file(make_demo(out), device="cpu").execute()
    return out / "run"


async def test_dashboard_of_a_finished_run(finished_run):
    app = app_for(probe_fn=lambda: fake_probe(1), run_dir=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        table = screen.query_one("#stages", DataTable)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["done"] * 9
        assert "demo  [preview]  done" in str(screen.query_one("#run-title", Label).render())
        log = screen.query_one("#log", Log)
        assert any("run_done" in line for line in log.lines)
        assert 0 in screen.cards  # the worker card of the preview generate stage


async def test_dashboard_follows_a_live_run(tmp_path):
    """Events appended by a (simulated) worker show on its card at the next refresh."""
    run = RunDir(tmp_path / "run")
    run.update_state(name="live", engine="nsynth", status="running",
                     stages={"prepare": {"status": "done"}, "generate": {"status": "running"}})
    app = app_for(probe_fn=lambda: fake_probe(2), run_dir=run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        run.emit("generate-w1", "progress", batch=3, batches=10, sample=32000, samples=64000, sounds=256,
                 samples_per_s=1_000_000.0)
        screen = app.screen
        screen.show_run(screen.read_run())  # (what the refresh's thread reads, shown)
        screen.refresh_gpus()
        await pilot.pause()
        card = screen.cards[1]
        assert "shard 3/10  50% of it" in str(card.query_one("#batch", Label).render())
        bar = card.query_one("#samples", ProgressBar)  # the worker's share: 2.5 of 10 shards
        assert bar.progress == 2 * 64000 + 32000 and bar.total == 10 * 64000
        rate = str(card.query_one("#rate", Label).render())
        # 256 sounds at 1M samples/s: 3,906.25 steps/s; 7.5 batches of 64,000 steps left: 122.9 s
        assert rate == "1.00M/s  ETA 2:02"
        assert "load 84%  35/80 GiB  62°C" in str(card.query_one("#gpu", Label).render())
        assert "GPU 1  H100 80GB HBM3" in str(card.query_one(".card-title", Label).render())
        assert "interrupted" in str(screen.query_one("#run-title", Label).render())  # no process holds it
        # a worker says which GPU it runs on (recipe gpus: [1, 0]): its card follows
        run.emit("generate-w0", "progress", batch=1, batches=10, sample=512, samples=64000, sounds=256,
                 samples_per_s=900_000.0, gpu=1)
        screen.show_run(screen.read_run())
        await pilot.pause()
        assert "GPU 1  H100" in str(screen.cards[0].query_one(".card-title", Label).render())
        assert "load 84%" in str(screen.cards[0].query_one("#gpu", Label).render())


async def test_stop_asks_first(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update_state(name="x", status="running")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from onss_tui.pipeline.rundir import RunDir\n"
        f"r = RunDir({str(run.path)!r})\n"
        "with r.lock():\n    print('locked', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        app = app_for(probe_fn=lambda: GpuProbe(problem="none"), run_dir=run.path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            await pilot.press("escape")  # cancel: nothing happens
            await pilot.pause()
            assert holder.poll() is None
            await pilot.press("s")
            await pilot.pause()
            await pilot.click("#yes")
            await pilot.pause()
        assert holder.wait(timeout=10) != 0  # SIGTERM
    finally:
        if holder.poll() is None:
            holder.kill()


async def test_wizard_walk_from_audio_to_finish(tmp_path):
    """Environment -> audio -> corners -> pitches -> review: save, run detached, dashboard, finish."""
    from textual.widgets import Input

    from onss_tui.pipeline.demo import PITCHES
    from onss_tui.tui.screens.finish import FinishScreen
    from onss_tui.tui.screens.wizard import AudioScreen, CornersScreen, GridScreen, ReviewScreen, SettingsScreen

    make_demo(tmp_path / "demo")  # its notes: sine, saw, pluck, bell at 48, 55, 60, 67
    app = app_for(probe_fn=lambda: GpuProbe(problem="no NVIDIA driver"), workdir=tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, AudioScreen)
        app.screen.query_one("#inputs", Input).value = str(tmp_path / "demo" / "audio")
        await pilot.press("enter")
        for _ in range(200):  # the folder is scanned on a thread
            await pilot.pause(0.02)
            if not app.screen.scanning:
                break
        assert app.draft.found == {n: PITCHES for n in ["bell", "pluck", "saw", "sine"]}
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, CornersScreen)
        assert app.screen.query_one("#top_left", Input).value == "bell"  # a first guess, one a corner
        app.screen.query_one("#bottom_right", Input).value = "sine, saw"  # saw is bottom-left already
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, CornersScreen)  # refused, with a notification
        app.screen.query_one("#bottom_right", Input).value = "sine"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        app.screen.query_one("#pitches", Input).value = "48, 60"
        app.screen.query_one("#resolution", Input).value = "5"
        await pilot.pause()
        assert "unique sounds, 1 pad file," in str(app.screen.query_one("#estimate").render())
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        assert app.screen.query_one("#device-data-directory", Input).value == "/home/pi/my-pack"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        app.screen.query_one("#name", Input).value = "wiz"
        await pilot.pause()
        await pilot.press("ctrl+r")
        for _ in range(300):  # saved, then the dry run's checks on a thread, then the run starts
            await pilot.pause(0.05)
            if isinstance(app.screen, DashboardScreen):
                break
        recipe = tmp_path / "recipes" / "wiz.yaml"
        assert recipe.is_file()
        assert "data_directory: /home/pi/wiz\n" in recipe.read_text()  # the pack's own folder on the device
        dash = app.screen
        assert isinstance(dash, DashboardScreen)
        for _ in range(600):
            await pilot.pause(0.1)
            if dash.run.state().status in ("done", "failed"):
                break
        dash.show_run(dash.read_run())
        assert dash.run.state().status == "done"
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, FinishScreen)
        text = str(app.screen.query_one("#ordering").render())
        assert "ordering check: OK" in text and "bell_pluck_saw_sine.bin" in text
        assert "validation: VALID" in str(app.screen.query_one("#validation").render())


async def test_recipes_mode_lists_runs_and_duplicates(tmp_path, finished_run):
    from onss_tui.recipe import load_recipe, save_recipe
    from onss_tui.tui.screens.recipes import RecipesScreen

    recipes = tmp_path / "recipes"
    done = load_recipe(finished_run.parent / "recipes" / "demo.yaml")
    save_recipe(done.model_copy(update={"inputs": str(finished_run.parent / "audio"), "output": str(finished_run)}),
                recipes / "demo.yaml")
    save_recipe(done.model_copy(update={"name": "fresh", "inputs": str(finished_run.parent / "audio"), "output": None}),
                recipes / "fresh.yaml")
    (recipes / "broken.yaml").write_text("name: [\n")
    app = app_for(probe_fn=lambda: GpuProbe(problem="none"), workdir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        await recipes_listed(pilot)
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        table = screen.query_one("#recipes", DataTable)
        rows = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[2]) for i in range(table.row_count)}
        assert rows == {"broken": "invalid recipe", "demo": "done", "fresh": "never run"}
        await pilot.press("down")  # demo
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and app.screen.run.path == finished_run
        await pilot.press("ctrl+o")
        await pilot.pause()
        await recipes_listed(pilot)
        await pilot.press("down", "c")
        await pilot.pause()
        assert load_recipe(recipes / "demo-2.yaml").name == "demo-2"
