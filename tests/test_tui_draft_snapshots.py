"""Snapshots (80x24) of the wizard's screens for unsaved work and recipes that fail their check:
the save / discard / cancel question, the offer to resume an autosaved draft, and an opened
recipe's problems shown in place. Accept an intended change of the look with
`pytest tests/test_tui_draft_snapshots.py --snapshot-update` (see tests/test_snapshots.py)."""

import json
import shutil
import time
from pathlib import Path

import pytest

from onss_tui.pipeline.demo import make_demo
from onss_tui.tui.recipe_edit import Draft, write_autosave
from tests.helpers import recipes_listed
from tests.test_snapshots import app_for, steady_cursors  # noqa: F401  (the fixture, for these pictures too)
from tests.test_tui_recipe_edit import BROKEN, SLURM_TYPO

WORK = Path("/tmp/onss-snapshots-drafts")  # paths show on some screens: one fixed folder
pytestmark = pytest.mark.xdist_group("snapshots")
SIZE = (80, 24)


@pytest.fixture()
def work():
    shutil.rmtree(WORK, ignore_errors=True)
    make_demo(WORK)
    yield WORK
    shutil.rmtree(WORK, ignore_errors=True)


async def open_first_recipe(pilot):
    await pilot.press("ctrl+o")
    await pilot.pause()
    await recipes_listed(pilot)
    await pilot.press("o")
    for _ in range(100):
        await pilot.pause(0.05)
        if type(pilot.app.screen).__name__ == "AudioScreen":
            break
    await pilot.pause()


def test_unsaved_changes_question(snap_compare, work):
    async def go(pilot):
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        pilot.app.screen.query_one("#top_left").value = "saw"
        pilot.app.screen.query_one("#bottom_left").value = "bell"
        pilot.app.screen.query_one("#labels").focus()
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()

    assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)


def test_resume_offer(snap_compare, work, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    draft = Draft(work)
    draft.update(name="strings", resolution=5)
    payload = json.loads(draft.to_json())
    payload["saved_at"] = 1_800_000_000  # 2027-01-15 08:00 UTC
    write_autosave(work, json.dumps(payload))

    async def go(pilot):
        for _ in range(100):
            await pilot.pause(0.05)
            if type(pilot.app.screen).__name__ == "ResumeDraft":
                break
        await pilot.pause()

    try:
        assert snap_compare(app_for(work), terminal_size=SIZE, run_before=go)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_failing_recipe_shows_its_problem_on_its_step(snap_compare, work):
    (work / "recipes" / "demo.yaml").write_text(BROKEN)

    async def go(pilot):
        await open_first_recipe(pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()

    assert snap_compare(app_for(work, gpus=0), terminal_size=SIZE, run_before=go)


def test_the_review_lists_the_problems_no_step_edits(snap_compare, work, monkeypatch):
    import onss_tui.tui.screens.review as review

    monkeypatch.setattr(review.shutil, "which", lambda name: None)  # the footer offers ctrl+l only with sbatch
    recipe = work / "recipes" / "demo.yaml"
    recipe.write_text(recipe.read_text() + SLURM_TYPO)

    async def go(pilot):
        await open_first_recipe(pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n")
        await pilot.pause()

    assert snap_compare(app_for(work, gpus=0), terminal_size=SIZE, run_before=go)


def test_the_review_refuses_a_run_that_cannot_work(snap_compare, work, monkeypatch):
    monkeypatch.setenv("ONSS_DATA_DIR", str(work / "data"))  # no checkpoint there; the path shows in the message
    recipe = work / "recipes" / "demo.yaml"
    recipe.write_text(recipe.read_text().replace("engine: preview", "engine: nsynth"))

    async def go(pilot):
        await open_first_recipe(pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n")
        await pilot.pause()
        await pilot.press("ctrl+r")
        for _ in range(400):  # saved, then the dry run's checks on a thread
            await pilot.pause(0.05)
            if not pilot.app.screen.checking and "not started" in str(
                    pilot.app.screen.query_one("#review-problems").render()):
                break
        await pilot.pause()

    assert snap_compare(app_for(work, gpus=0), terminal_size=SIZE, run_before=go)
