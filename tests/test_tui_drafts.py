"""Unsaved work is not lost: quitting with unsaved changes asks first (save / discard / cancel), every
change is autosaved to the user state folder, and the next start offers it back. And the review's
"run on Slurm", offered where sbatch is on the PATH and the recipe has a slurm: section."""

import os
import stat

from textual.widgets import DataTable, Input, Static

from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.rundir import RunDir
from onss_tui.recipe import load_recipe
from onss_tui.tui.recipe_edit import autosave_path
from onss_tui.tui.screens import review
from onss_tui.tui.screens.dashboard import DashboardScreen
from onss_tui.tui.screens.environment import EnvironmentScreen
from onss_tui.tui.screens.wizard import (
    AudioScreen,
    CornersScreen,
    GridScreen,
    ResumeDraft,
    ReviewScreen,
    SlurmResult,
    UnsavedChanges,
)
from tests.helpers import recipes_listed
from tests.test_tui_recipe_edit import SIZE, app_for, open_in_wizard, settle, to_review


async def to_corners_with_a_change(pilot):
    """The wizard's corners step, with bell and saw swapped (an unsaved change); the labels table
    focused (q there is the app's key, not a letter typed)."""
    await pilot.press("ctrl+n")
    await pilot.pause()
    await pilot.press("ctrl+n")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, CornersScreen)
    screen.query_one("#top_left", Input).value = "saw"
    screen.query_one("#bottom_left", Input).value = "bell"
    await pilot.pause()
    screen.query_one("#labels", DataTable).focus()
    await settle(pilot)
    assert pilot.app.draft.dirty


async def test_quit_with_unsaved_changes_asks_and_cancel_keeps_working(tmp_path):
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await to_corners_with_a_change(pilot)
        assert autosave_path(tmp_path).is_file()  # autosaved on the change
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, UnsavedChanges)
        assert "'my-pack' has unsaved changes" in str(app.screen.query_one("Label").render())
        await pilot.press("q")  # (asking again is no answer)
        await pilot.pause()
        await pilot.press("escape")  # cancel
        await pilot.pause()
        assert isinstance(app.screen, CornersScreen) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        await pilot.click("#cancel")
        await pilot.pause()
        assert isinstance(app.screen, CornersScreen) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        await pilot.click("#discard")
        await settle(pilot)
    assert app.return_code == 0
    assert not autosave_path(tmp_path).exists()  # discarded: nothing offered next time
    assert not (tmp_path / "recipes" / "my-pack.yaml").exists()


async def test_quit_can_save_first(tmp_path):
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await to_corners_with_a_change(pilot)
        await pilot.press("q")
        await pilot.pause()
        await pilot.click("#save")
        await settle(pilot)
    assert app.return_code == 0
    saved = load_recipe(tmp_path / "recipes" / "my-pack.yaml")
    assert saved.corners.names() == [["saw"], ["pluck"], ["bell"], ["sine"]]
    assert not autosave_path(tmp_path).exists()


async def test_quit_without_changes_quits_at_once(tmp_path):
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")
        await pilot.pause()
        app.screen.query_one("#tree").focus()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not autosave_path(tmp_path).exists()


async def test_an_autosaved_draft_is_offered_on_the_next_start(tmp_path):
    make_demo(tmp_path)
    first = app_for(tmp_path)
    async with first.run_test(size=SIZE) as pilot:  # ends without quitting: a dropped SSH session
        await to_corners_with_a_change(pilot)
    assert autosave_path(tmp_path).is_file()

    again = app_for(tmp_path)
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(again.screen, ResumeDraft)
        assert "Resume the unsaved recipe 'my-pack'?" in str(again.screen.query_one("Label").render())
        await pilot.click("#resume-yes")
        await pilot.pause()
        assert isinstance(again.screen, AudioScreen)
        assert again.draft.dirty and again.draft.corners["top_left"] == ["saw"]
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert again.screen.query_one("#top_left", Input).value == "saw"  # the work, where it was left

    third = app_for(tmp_path)  # not decided yet: offered again; discard drops it
    async with third.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(third.screen, ResumeDraft)
        await pilot.click("#resume-discard")
        await settle(pilot)
        assert isinstance(third.screen, EnvironmentScreen) and not third.draft.dirty
    assert not autosave_path(tmp_path).exists()

    fourth = app_for(tmp_path)
    async with fourth.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(fourth.screen, EnvironmentScreen)  # nothing to offer


async def test_opening_another_recipe_over_unsaved_changes_asks(tmp_path):
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await to_corners_with_a_change(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await recipes_listed(pilot)
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, UnsavedChanges)
        await pilot.press("escape")
        await pilot.pause()
        assert app.draft.dirty and app.draft.corners["top_left"] == ["saw"]
        await pilot.press("o")
        await pilot.pause()
        await pilot.click("#discard")
        await settle(pilot)
        assert isinstance(app.screen, AudioScreen) and app.draft.name == "demo"


# --------------------------------------------------------------------------------------------
# Run on Slurm


SLURM = "slurm:\n  partition: gpu\n  time: '12:00:00'\n  max_tasks: 2\n"


def fake_sbatch(folder):
    folder.mkdir()
    sbatch = folder / "sbatch"
    sbatch.write_text("#!/bin/sh\necho 'fake sbatch: no cluster here' >&2\nexit 1\n")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IXUSR)
    return folder


async def slurm_offered(tmp_path) -> bool:
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        await to_review(pilot)
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        return "Run on Slurm" in titles


async def test_run_on_slurm_is_offered_with_sbatch_and_a_slurm_section(tmp_path, monkeypatch):
    recipe = make_demo(tmp_path)
    bin_dir = fake_sbatch(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # (this machine may have a real sbatch)
    assert not await slurm_offered(tmp_path)  # no slurm section, no sbatch
    recipe.write_text(recipe.read_text() + SLURM)
    assert not await slurm_offered(tmp_path)  # a section, but no sbatch on the PATH
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{tmp_path / 'empty'}")
    assert await slurm_offered(tmp_path)
    recipe.write_text(recipe.read_text().replace(SLURM, ""))
    assert not await slurm_offered(tmp_path)  # sbatch, but no section


async def test_run_on_slurm_saves_submits_and_opens_the_dashboard(tmp_path, monkeypatch):
    recipe = make_demo(tmp_path)
    recipe.write_text(recipe.read_text() + SLURM)
    monkeypatch.setenv("PATH", str(fake_sbatch(tmp_path / "bin")))
    run = RunDir(tmp_path / "run")
    run.update_state(name="demo", engine="preview", status="running")
    submitted = []

    def submit(path):
        submitted.append(path)
        if len(submitted) == 1:
            return SlurmResult(False, "sbatch: error: invalid partition specified: gpu", None)
        return SlurmResult(True, "Submitted to Slurm: head 101, generate 102, finish 103 (generate tasks 0-1)",
                           run.path)

    monkeypatch.setattr(review, "submit_to_slurm", submit)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        await to_review(pilot)
        await settle(pilot)
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert submitted == [recipe]
        assert isinstance(app.screen, ReviewScreen)  # the error, shown where the recipe is
        assert "invalid partition specified" in str(app.screen.query_one("#review-problems", Static).render())
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert submitted == [recipe, recipe]
        assert isinstance(app.screen, DashboardScreen) and app.screen.run.path == run.path
        assert any("head 101, generate 102, finish 103" in str(n.message) for n in app._notifications)
    assert load_recipe(recipe).slurm is not None


async def test_the_grid_keeps_gpu_numbers_it_cannot_offer(tmp_path):
    recipe = make_demo(tmp_path)
    recipe.write_text(recipe.read_text().replace("gpus: all", "gpus: [2, 3]"))
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        assert app.screen.query_one("#gpus").value == "[2, 3]"
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert "gpus: [2, 3]" in app.screen.query_one("#yaml").text and not app.draft.dirty
