"""The wizard's settings step (the device's settings.json, the advanced generation and clean settings
folded away), the pitches step's hints (pitches left out, presets the notes do not cover, missing
notes as typed, the preview engine's measured time), and the review's dry run before a run starts."""

from pathlib import Path

import pytest
import yaml
from textual.widgets import Checkbox, Collapsible, Input, Select, Static

from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.throughput import PreviewCost, preview_projection
from onss_tui.tui.screens.dialogs import ConfirmRun
from onss_tui.tui.screens.wizard import GridScreen, ReviewScreen, SettingsScreen
from tests.test_tui_wizard import SIZE, app_for, walk_to

GOLDEN_CKPT = Path(__file__).resolve().parents[2] / "shared" / "golden" / "tf_bundle" / "model.ckpt-200000"


@pytest.fixture()
def demo(tmp_path):
    make_demo(tmp_path)  # notes in tmp/audio: bell, pluck, saw, sine at 48, 55, 60, 67
    return tmp_path


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def saved(pilot) -> dict:
    """ctrl+s on the review step; the recipe file's data once written."""
    app = pilot.app
    await walk_to(pilot, ReviewScreen)
    await pilot.press("ctrl+s")
    for _ in range(100):
        await pilot.pause(0.05)
        if app.saved_recipe is not None and not app.draft.dirty:
            break
    assert app.saved_recipe is not None
    return yaml.safe_load(app.saved_recipe.read_text())


# --------------------------------------------------------------------------------------------
# The settings step


async def test_every_device_and_advanced_setting_is_set_in_the_wizard_and_saved(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, SettingsScreen)
        screen = app.screen
        assert screen.query_one("#advanced", Collapsible).collapsed  # the advanced ones are folded away
        assert screen.query_one("#device-data-directory", Input).value == "/home/pi/my-pack"
        values = {"#device-data-directory": "/home/pi/strings-pack", "#device-midi-channel": "5",
                  "#device-osc-port": "9000", "#device-loop-start": "0.1", "#device-loop-end": "0.6",
                  "#generation-batch-size": "16", "#generation-seed": "7", "#generation-save-every": "4096",
                  "#generation-sample-length": "32768", "#clean-normalize-dbfs": "-6"}
        for selector, value in values.items():
            screen.query_one(selector, Input).value = value
        screen.query_one("#device-looping", Checkbox).value = False
        screen.query_one("#generation-kernels", Select).value = "torch"
        screen.query_one("#clean-mode", Select).value = "lowpass"
        await pilot.pause()
        assert not text_of(screen, "#recipe-problems").strip()
        data = await saved(pilot)
    assert data["device"] == {"data_directory": "/home/pi/strings-pack", "looping": False, "loop_start": 0.1,
                              "loop_end": 0.6, "midi_channel": 5, "osc_port": 9000}
    assert data["generation"] | {"precision": None, "gpus": None} == {
        "precision": None, "gpus": None, "kernels": "torch", "batch_size": 16, "seed": 7, "save_every": 4096,
        "sample_length": 32768}
    assert data["clean"] == {"mode": "lowpass", "normalize_dbfs": -6.0}


async def test_a_new_packs_data_folder_is_its_own_and_follows_its_name(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, ReviewScreen)
        app.screen.query_one("#name", Input).value = "strings"
        await pilot.pause()
        assert app.draft.recipe.device.data_directory == "/home/pi/strings"
        data = await saved(pilot)
        assert data["device"]["data_directory"] == "/home/pi/strings"
        # a folder the user typed stays as typed when the name changes
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        app.screen.query_one("#device-data-directory", Input).value = "/home/pi/mine"
        await pilot.pause()
        await walk_to(pilot, ReviewScreen)
        app.screen.query_one("#name", Input).value = "brass"
        await pilot.pause()
        assert app.draft.recipe.device.data_directory == "/home/pi/mine"


async def test_settings_problems_show_in_place_and_stop_next(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, SettingsScreen)
        screen = app.screen
        screen.query_one("#device-midi-channel", Input).value = "17"
        await pilot.pause()
        assert screen.query_one("#device-midi-channel").has_class("-invalid")
        assert "device.midi_channel: must be from 1 to 16 (it is 17)" in text_of(screen, "#recipe-problems")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)  # refused, with the reason
        screen.query_one("#device-midi-channel", Input).value = "2"
        screen.query_one("#device-data-directory", Input).value = ""
        await pilot.pause()
        assert ("device.data_directory: (empty) is not a folder on the device, e.g. /home/pi/NAME"
                in text_of(screen, "#recipe-problems"))
        assert app.draft.recipe.device.data_directory == "/home/pi/my-pack"  # kept until a folder is typed
        screen.query_one("#device-data-directory", Input).value = "/home/pi/x"
        # loop points the wrong way round: the model's own rule, on the step
        screen.query_one("#device-loop-start", Input).value = "0.7"
        await pilot.pause()
        assert "loop_start (0.7) must be below loop_end (0.41)" in text_of(screen, "#recipe-problems")
        assert screen.query_one("#device-loop-start").has_class("-invalid")
        assert screen.query_one("#device-loop-end").has_class("-invalid")
        screen.query_one("#device-loop-start", Input).value = "0.2"
        # a problem in a folded field unfolds it; what is typed that is no number at all is said too
        screen.query_one("#generation-batch-size", Input).value = "many"
        await pilot.pause()
        assert not screen.query_one("#advanced", Collapsible).collapsed
        assert "generation.batch_size: many is not auto or a whole number" in text_of(screen, "#recipe-problems")
        assert app.draft.recipe.generation.batch_size == "auto"  # the draft keeps its value meanwhile
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        screen.query_one("#generation-batch-size", Input).value = "auto"
        await pilot.pause()
        assert not text_of(screen, "#recipe-problems").strip()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)


async def test_an_opened_recipes_settings_fill_the_step_and_an_edit_in_the_review_reaches_it(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, ReviewScreen)
        area = app.screen.query_one("#yaml")
        area.text = area.text.replace("midi_channel: 1\n", "midi_channel: 9\n").replace("osc_port: 8000",
                                                                                        "osc_port: 7000")
        await pilot.pause()
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        assert app.screen.query_one("#device-midi-channel", Input).value == "9"
        assert app.screen.query_one("#device-osc-port", Input).value == "7000"


# --------------------------------------------------------------------------------------------
# The pitches step


async def test_pitches_left_out_missing_notes_and_presets_are_said(demo):
    (demo / "audio" / "bell_67.wav").unlink()
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, GridScreen)
        screen = app.screen
        assert screen.query_one("#pitches", Input).value == "48, 55, 60"
        assert "left out 67: not every instrument has a note there (bell at 67)" in text_of(screen, "#pitch-hint")
        # typed back in: an error in place, as typed, and Next refuses
        screen.query_one("#pitches", Input).value = "48, 67"
        await pilot.pause()
        assert "missing notes: bell at 67; remove those pitches or add the notes" in text_of(screen, "#estimate")
        assert screen.query_one("#pitches").has_class("-invalid")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        labels = [str(label) for label, _ in screen.query_one("#preset", Select)._options if _ is not Select.BLANK]
        assert "original (24..84 step 4): 14 of 16 pitches lack notes" \
            in labels
        assert "four octaves (36, 48, 60, 72): 2 of 4 pitches lack notes" in labels


async def test_resolution_problem_names_the_field_and_range_and_one_pad_is_one_file(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, GridScreen)
        screen = app.screen
        screen.query_one("#resolution", Input).value = "1"
        await pilot.pause()
        assert "resolution: must be from 2 to 33 (it is 1)" in text_of(screen, "#estimate")
        screen.query_one("#resolution", Input).value = "9"
        await pilot.pause()
        assert ", 1 pad file, " in text_of(screen, "#estimate")


async def test_the_preview_engines_time_is_a_number_measured_on_this_cpu(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, GridScreen)
        for _ in range(200):  # measured on a thread
            if app.screen.preview is not None:
                break
            await pilot.pause(0.05)
        cost = app.screen.preview
        await pilot.pause()
        text = text_of(app.screen, "#estimate")
    assert cost.morph > 0 and cost.clean > 0
    assert preview_projection(308, cost).text in text
    assert " on this CPU (preview engine; measured here: " in text


def test_the_preview_projection_adds_the_stages_costs():
    cost = PreviewCost(morph=0.02, clean=0.04)
    p = preview_projection(1000, cost, cpu_workers=2)
    assert p.seconds == pytest.approx(3.0 + 20 + 20)
    assert p.text.startswith("about 43 s on this CPU")


# --------------------------------------------------------------------------------------------
# The review: the dry run's checks before a run starts


def recording_runs(demo) -> tuple:
    """An app whose runs are recorded instead of started (a real start is a detached process: tested
    in test_tui.py), and the list they are recorded in."""
    started: list[Path] = []
    app = app_for(demo)
    app.start_run = started.append
    return app, started


async def to_review_with_nsynth(pilot) -> None:
    await walk_to(pilot, GridScreen)
    pilot.app.screen.query_one("#engine", Select).value = "nsynth"
    await pilot.pause()
    await walk_to(pilot, ReviewScreen)


async def wait_checked(pilot) -> None:
    """Until the review's dry run has answered."""
    for _ in range(400):
        await pilot.pause(0.05)
        if not pilot.app.screen.checking:
            return
    raise AssertionError("the dry run never answered")


async def test_a_run_that_cannot_work_is_not_started_and_says_why(demo):
    app, started = recording_runs(demo)
    async with app.run_test(size=SIZE) as pilot:
        await to_review_with_nsynth(pilot)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        await wait_checked(pilot)
        shown = text_of(app.screen, "#review-problems")
        assert isinstance(app.screen, ReviewScreen)
    assert started == []
    assert "not started: the nsynth engine needs the NSynth checkpoint" in shown
    assert "onss model download" in shown and "engine: preview" in shown
    assert (demo / "recipes" / "my-pack.yaml").exists()  # saved all the same: nothing is lost


async def test_nsynth_on_the_cpu_is_asked_about_first(demo):
    app, started = recording_runs(demo)
    async with app.run_test(size=SIZE) as pilot:
        await to_review_with_nsynth(pilot)
        area = app.screen.query_one("#yaml")
        area.text = area.text.replace("checkpoint: null", f"checkpoint: {GOLDEN_CKPT}")
        await pilot.pause()
        for answer in ("cancel", "run"):
            await pilot.press("ctrl+r")
            for _ in range(400):
                await pilot.pause(0.05)
                if isinstance(app.screen, ConfirmRun):
                    break
            assert isinstance(app.screen, ConfirmRun)
            assert "No CUDA GPU here: NSynth would generate 308 sounds on the CPU" in str(
                app.screen.query_one("Label").render())
            await pilot.click(f"#{answer}")
            await pilot.pause()
            assert started == ([] if answer == "cancel" else [demo / "recipes" / "my-pack.yaml"])


async def test_a_run_that_passes_the_checks_starts(demo):
    app, started = recording_runs(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, ReviewScreen)
        await pilot.press("ctrl+r")
        for _ in range(400):
            await pilot.pause(0.05)
            if started:
                break
    assert started == [demo / "recipes" / "my-pack.yaml"]
