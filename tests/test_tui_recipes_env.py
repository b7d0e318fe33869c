"""The recipes screen lists every run of this user (the registry), not only ./runs; the environment
screen says what `onss env` says and keeps a failed download's reason; the keys panel and the footer
read right at 80 columns."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, HelpPanel, Static

from onss_tui.cli import main
from onss_tui.pipeline.demo import PITCHES, make_demo
from onss_tui.tui.screens.dashboard import DashboardScreen
from onss_tui.tui.screens.environment import EnvironmentScreen
from onss_tui.tui.screens.recipes import RecipesScreen
from tests.helpers import recipes_listed
from tests.test_snapshots import app_for

SIZE = (80, 24)


def screen_text(app) -> list[str]:
    """The screen as drawn: one string a line."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def small_demo_run(folder: Path) -> Path:
    recipe = make_demo(folder)
    text = recipe.read_text().replace("resolution: 9", "resolution: 2")
    recipe.write_text(text.replace(f"pitches: {list(PITCHES)}", f"pitches: [{PITCHES[0]}]"))
    assert main(["run", str(recipe), "--json"]) == 0
    return folder / "run"


async def test_a_run_started_in_another_folder_is_listed_and_attached(tmp_path, capsys):
    run = small_demo_run(tmp_path / "elsewhere")  # registered in this test's state folder (conftest)
    capsys.readouterr()
    home = tmp_path / "home"
    home.mkdir()
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await recipes_listed(pilot)
        assert isinstance(app.screen, RecipesScreen)
        table = app.screen.query_one("#recipes", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [["demo", "preview", "done", str(run)]], rows
        assert "0 recipe(s)" in str(app.screen.query_one("#detail", Static).render())
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and app.screen.run.path == run


async def test_a_recipe_here_and_its_run_are_one_row(tmp_path, capsys):
    run = small_demo_run(tmp_path)
    capsys.readouterr()
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await recipes_listed(pilot)
        table = app.screen.query_one("#recipes", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [["demo", "preview", "done", "run"]], rows  # (the run folder, relative to here)
        assert run.is_dir()
        await pilot.press("r")  # read again, on a thread
        await recipes_listed(pilot, lists=2)
        assert table.row_count == 1


async def test_escape_closes_the_keys_panel_and_quit_reads_once(tmp_path):
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_show_help_panel()
        await pilot.pause()
        assert app.screen.query(HelpPanel)
        drawn = "\n".join(screen_text(app))
        assert "^q q" in drawn and drawn.count("Quit") == 1, drawn  # one line for both keys
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query(HelpPanel) and isinstance(app.screen, EnvironmentScreen)
        await pilot.press("ctrl+n")  # escape without the panel is the screens' own again
        await pilot.pause()
        screen = app.screen
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_the_environment_footer_fits_80_columns(tmp_path):
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        footer = screen_text(app)[-1]
        for key in ("r Refresh", "^n Next: audio", "d Download", "q Quit", "^o Recipes", "^p palette"):
            assert key in footer, footer
        assert "Environment" not in footer  # (this is it)
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("tab")  # off the folder input, which takes printable keys
        await pilot.pause()
        assert "e Environment" in screen_text(app)[-1]


async def test_the_environment_says_what_onss_env_says(tmp_path, capsys):
    assert main(["env"]) == 0
    env = capsys.readouterr().out
    app = app_for(tmp_path, tools_status=None)  # (the real one)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        tools = str(app.screen.query_one("#tools", Static).render())
        for part in ("slurm", "audio"):
            line = next(x for x in env.splitlines() if x.startswith(part)).split(None, 1)[1]
            assert f"{part}: {line}" in tools, (tools, line)
        checkpoint = str(app.screen.query_one("#checkpoint", Static).render())
        assert "the preview engine runs without one" in checkpoint


async def test_the_dashboard_of_an_interrupted_run_says_stopped_and_keeps_the_app_keys(tmp_path):
    """The title says interrupted and the stage column agrees (it said running); e and ctrl+o still
    work there, out of a footer that is full at 80 columns."""
    from onss_tui.pipeline.rundir import RunDir

    run = RunDir(tmp_path / "live")
    run.update_state(name="strings", engine="nsynth", status="running",
                     stages={"prepare": {"status": "done"}, "generate": {"status": "running"}})
    app = app_for(tmp_path, run_dir=run.path)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):  # (read on a thread)
            await pilot.pause(0.05)
            if "interrupted" in str(app.screen.query_one("#run-title").render()):
                break
        await pilot.pause(0.2)
        table = app.screen.query_one("#stages", DataTable)
        assert str(table.get_cell("generate", "status")) == "stopped"
        assert str(table.get_cell("prepare", "status")) == "done"
        footer = screen_text(app)[-1]
        assert "s Stop" in footer and "q Quit" in footer and "Environment" not in footer, "\n".join(screen_text(app))
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EnvironmentScreen)
        await pilot.press("ctrl+o")
        await recipes_listed(pilot)
        assert isinstance(app.screen, RecipesScreen)


async def test_a_run_under_runs_that_no_registry_knows_is_listed(tmp_path, monkeypatch, capsys):
    """A run of an onss before the registry (or another state folder): found under ./runs all the same."""
    with monkeypatch.context() as m:
        m.setenv("ONSS_STATE_DIR", str(tmp_path / "other-state"))
        recipe = make_demo(tmp_path / "src")
        text = recipe.read_text().replace("resolution: 9", "resolution: 2")
        text = text.replace(f"pitches: {list(PITCHES)}", f"pitches: [{PITCHES[0]}]")
        recipe.write_text(text.replace("output: ../run", f"output: {tmp_path / 'home' / 'runs' / 'old'}"))
        assert main(["run", str(recipe), "--json"]) == 0
    capsys.readouterr()
    app = app_for(tmp_path / "home")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await recipes_listed(pilot)
        table = app.screen.query_one("#recipes", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [["demo", "preview", "done", "runs/old"]], rows
