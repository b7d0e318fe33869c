"""Editing a saved recipe in the wizard keeps it: every field survives an unchanged save (the very
bytes, comments and all), and an edited one keeps its comments and key order where nothing changed.
A recipe that fails its check opens with its problems shown where they are, and can be fixed."""

import asyncio
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.widgets import DataTable, Input, Static, TextArea

from onss_tui.gpu import GpuProbe
from onss_tui.pipeline.demo import PITCHES, make_demo
from onss_tui.recipe import Recipe, Slurm, load_recipe, parse_recipe, recipe_yaml
from onss_tui.tui.app import create_app
from onss_tui.tui.recipe_edit import Draft, lenient_recipe, load_data, recipe_data
from onss_tui.tui.screens.recipes import RecipesScreen
from onss_tui.tui.screens.wizard import AudioScreen, CornersScreen, GridScreen, ReviewScreen, SettingsScreen
from tests.helpers import recipes_listed

SIZE = (80, 24)
NAMES = ["bell", "pluck", "saw", "sine"]  # the demo's instruments, at PITCHES


def app_for(tmp_path, **kw):
    kw.setdefault("probe_fn", lambda: GpuProbe(problem="no NVIDIA driver"))
    kw.setdefault("torch_status", lambda: "torch 2.13.0: no CUDA")
    kw.setdefault("checkpoint_status", lambda: "checkpoint: not installed")
    kw.setdefault("bench_results", lambda: [])
    return create_app(workdir=tmp_path, **kw)


WORKERS = {"open", "save", "autosave", "autosave-read", "slurm", "sbatch", "scan"}  # the wizard's thread workers


async def settle(pilot):
    """Until the wizard's thread workers (reading, saving, autosaving) are done and what they
    posted is handled (a worker may start the next: twice quiet in a row)."""
    quiet = 0
    for _ in range(500):
        await pilot.pause(0.02)
        busy = any(w.group in WORKERS and not w.is_finished for w in pilot.app.workers)
        quiet = 0 if busy else quiet + 1
        if quiet >= 3:
            await pilot.pause()
            return
    raise AssertionError("the wizard's workers never finished")


# --------------------------------------------------------------------------------------------
# Generated recipes

words = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
paths = st.from_regex(r"/[a-z0-9_.-]{1,12}(/[a-z0-9_.-]{1,12}){0,2}", fullmatch=True)


@st.composite
def instruments(draw):
    order = draw(st.permutations(NAMES))
    out = []
    for name in order:
        label = draw(st.sampled_from(["bare", "display", "both"]))
        if label == "bare":
            out.append(name)
        else:
            entry = {"name": name, "display": draw(st.from_regex(r"[A-Z][A-Z0-9 ]{0,6}[A-Z0-9]", fullmatch=True))}
            if label == "both":
                entry["abbr"] = draw(st.from_regex(r"[A-Z][A-Z0-9]?", fullmatch=True))
            out.append(entry)
    return dict(zip(["top_left", "top_right", "bottom_left", "bottom_right"], [[i] for i in out]))


RELATIVE = st.just("../audio")


@st.composite
def recipes(draw, inputs=RELATIVE):
    loop_start = draw(st.floats(0, 0.9, allow_nan=False).map(lambda x: round(x, 3)))
    data = {
        "name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,12}", fullmatch=True)),
        "inputs": draw(inputs),
        "corners": draw(instruments()),
        "pitches": draw(st.lists(st.sampled_from(PITCHES), min_size=1, max_size=4, unique=True)),
        "resolution": draw(st.integers(2, 33)),
        "engine": draw(st.sampled_from(["nsynth", "preview"])),
        "checkpoint": draw(st.none() | paths),
        "generation": {
            "precision": draw(st.sampled_from(["auto", "fp32", "tf32", "bf16"])),
            "kernels": draw(st.sampled_from(["auto", "torch", "triton"])),
            "batch_size": draw(st.just("auto") | st.integers(1, 4096)),
            "gpus": draw(st.just("all") | st.integers(1, 8) | st.lists(st.integers(0, 7), min_size=1, max_size=4,
                                                                     unique=True)),
            "seed": draw(st.integers(0, 2**32 - 1)),
            "sample_length": 512 * draw(st.integers(1, 200)),
            "save_every": draw(st.integers(64, 100_000)),
        },
        "clean": {"mode": draw(st.sampled_from(["mp3", "lowpass", "none"])),
                  "normalize_dbfs": draw(st.floats(-60, 0, allow_nan=False))},
        "device": {"data_directory": draw(paths), "looping": draw(st.booleans()), "loop_start": loop_start,
                   "loop_end": round(loop_start + draw(st.floats(0.01, 0.09)), 3) if loop_start < 0.9 else 1.0,
                   "midi_channel": draw(st.integers(1, 16)), "osc_port": draw(st.integers(1, 65535))},
        "output": draw(st.none() | words.map(lambda w: f"../runs/{w}")),
    }
    if draw(st.booleans()):
        data["slurm"] = {"partition": draw(words), "time": draw(st.sampled_from(["90", "12:00:00", "2-00:00:00"])),
                         "max_tasks": draw(st.integers(1, 64)),
                         "account": draw(st.none() | words), "mem": draw(st.none() | st.sampled_from(["16G", "500M"])),
                         "extra": draw(st.sampled_from([[], ["--exclusive"], ["--constraint=h100"]]))}
    return Recipe.model_validate(data)


@st.composite
def commented(draw, recipe):
    """The recipe as a person might keep it: a header, and comments after some of its lines."""
    lines = recipe_yaml(recipe).splitlines()
    out = ["# my recipe", "# (kept by hand)"]
    for i, line in enumerate(lines):
        out.append(f"{line}   # note {i}" if draw(st.booleans()) else line)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# The draft, without the screens (many examples)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_an_unchanged_recipe_saves_as_the_same_recipe_and_the_same_text(tmp_path_factory, data):
    recipe = data.draw(recipes(inputs=st.just("../audio") | paths))
    text = data.draw(commented(recipe))
    work = tmp_path_factory.getbasetemp() / "w"
    draft = Draft(work)
    draft.open_text(work / "recipes" / "x.yaml", text)
    assert draft.recipe == recipe and not draft.dirty
    check = draft.check()
    assert check.problems == [] and check.recipe == recipe
    assert check.text == text  # byte for byte
    assert lenient_recipe(load_data(text)) == recipe
    restored = Draft.from_json(draft.to_json(), work)  # the autosave keeps it too
    assert restored.recipe == recipe and restored.check().text == text


def top_keys(text: str) -> list[str]:
    return [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_an_edited_recipe_keeps_comments_and_order_where_nothing_changed(tmp_path_factory, data):
    recipe = data.draw(recipes())
    text = data.draw(commented(recipe))
    work = tmp_path_factory.getbasetemp() / "w"
    draft = Draft(work)
    draft.open_text(work / "recipes" / "x.yaml", text)
    change = data.draw(st.sampled_from(["pitches", "gpus", "seed", "slurm", "clean", "labels", "resolution"]))
    if change == "pitches":
        draft.update(pitches=list(reversed(recipe.pitches)) + ([] if len(recipe.pitches) == 4 else [0]))
    elif change == "gpus":
        draft.update_generation(gpus=[5, 6] if recipe.generation.gpus != [5, 6] else "all")
    elif change == "seed":
        draft.update_generation(seed=(recipe.generation.seed + 1) % 2**32)
    elif change == "slurm":
        draft.update(slurm=None if recipe.slurm else Slurm(partition="gpu", time="60", max_tasks=2))
    elif change == "clean":
        draft.update(clean=recipe.clean.model_copy(update={"mode": "none" if recipe.clean.mode != "none" else "mp3"}))
    elif change == "labels":
        first = recipe.corners.top_left[0]
        draft.set_label(first.name, "display", "NEWX" if first.display != "NEWX" else "NEWY")
    else:
        draft.update(resolution=2 if recipe.resolution == 33 else recipe.resolution + 1)
    assert draft.dirty
    expected = Recipe.model_validate(draft.recipe.model_dump())
    check = draft.check()
    assert check.problems == [] and check.recipe == expected
    assert parse_recipe(check.text) == expected
    # the top-level keys keep their order; every line of an unchanged section is kept, comment and all
    changed = {k for k in recipe_data(recipe).keys() | recipe_data(expected).keys()
               if recipe_data(recipe).get(k) != recipe_data(expected).get(k)}
    kept = [k for k in top_keys(text) if k in top_keys(check.text)]
    assert kept == [k for k in top_keys(check.text) if k in kept]
    assert check.text.startswith("# my recipe\n# (kept by hand)\n")
    section = None
    for line in text.splitlines()[2:]:
        section = line.split(":")[0] if line[:1].isalpha() else section
        if section not in changed:
            assert line in check.text.splitlines(), (change, line)


# --------------------------------------------------------------------------------------------
# Through the screens: ctrl+o, o, ctrl+n to the review, ctrl+s


async def open_in_wizard(pilot, row: int = 0):
    await pilot.press("ctrl+o")
    await pilot.pause()
    await recipes_listed(pilot)
    assert isinstance(pilot.app.screen, RecipesScreen)
    table = pilot.app.screen.query_one("#recipes", DataTable)
    table.move_cursor(row=row)
    await pilot.press("o")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AudioScreen), type(pilot.app.screen).__name__


async def to_review(pilot):
    for screen in (CornersScreen, GridScreen, SettingsScreen, ReviewScreen):
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(pilot.app.screen, screen), (screen.__name__, type(pilot.app.screen).__name__)


async def journey(work, path) -> None:
    app = app_for(work)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        await to_review(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.saved_recipe == path
        assert not app.draft.dirty


@pytest.fixture(scope="module")
def demo_notes(tmp_path_factory):
    out = tmp_path_factory.mktemp("notes")
    make_demo(out)
    return out / "audio"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_the_wizard_saves_an_unchanged_recipe_as_it_was(tmp_path_factory, demo_notes, data):
    recipe = data.draw(recipes())
    text = data.draw(commented(recipe))
    work = tmp_path_factory.mktemp("work")
    shutil.copytree(demo_notes, work / "audio")
    path = work / "recipes" / f"{recipe.name}.yaml"
    path.parent.mkdir()
    path.write_text(text)
    asyncio.run(journey(work, path))
    assert path.read_text() == text
    assert load_recipe(path) == recipe


EDITED = """\
# birds: kept by hand
name: birds
inputs: ../audio          # the notes, next to recipes/
corners:
  top_left: [sine]
  top_right: [{name: saw, display: SAWTOOTH, abbr: SW}]
  bottom_left: [pluck]
  bottom_right: [bell]
pitches: [48, 60]         # two octaves apart
resolution: 5
engine: nsynth
checkpoint: /models/wavenet-ckpt/model.ckpt-200000
generation:
  precision: bf16
  kernels: torch
  batch_size: 512
  gpus: [2, 3]            # the two free GPUs
  seed: 7
  sample_length: 32768
  save_every: 4096
clean: {mode: lowpass, normalize_dbfs: -18}
device:
  data_directory: /home/pi/birds
  looping: false
  loop_start: 0.1
  loop_end: 0.5
  midi_channel: 3
  osc_port: 9000
output: ../runs/birds-v1
slurm:
  partition: gpu          # sinfo lists them
  time: "12:00:00"
  max_tasks: 4
  mem: 16G
  extra: [--exclusive]
"""


async def test_editing_a_saved_recipe_keeps_every_setting_and_comment(tmp_path):
    make_demo(tmp_path)
    (tmp_path / "recipes" / "demo.yaml").unlink()
    path = tmp_path / "recipes" / "birds.yaml"
    path.write_text(EDITED)
    before = load_recipe(path)
    await journey(tmp_path, path)
    assert path.read_text() == EDITED  # unchanged: the very bytes
    # now change one thing on the pitches step: only its line changes
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        assert app.screen.query_one("#gpus").value == "[2, 3]"  # the recipe's GPUs, offered as they are
        app.screen.query_one("#resolution", Input).value = "7"
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        assert app.draft.dirty
        assert "resolution: 7\n" in app.screen.query_one("#yaml", TextArea).text
        await pilot.press("ctrl+s")
        await settle(pilot)
    saved = load_recipe(path)
    assert saved == before.model_copy(update={"resolution": 7})
    assert saved.generation.gpus == [2, 3] and saved.slurm is not None and saved.slurm.mem == "16G"
    assert path.read_text() == EDITED.replace("resolution: 5\n", "resolution: 7\n")


BROKEN = """\
# a recipe with a pitch out of range
name: broken
inputs: ../audio
corners: {top_left: [sine], top_right: [saw], bottom_left: [pluck], bottom_right: [bell]}
pitches: [48, 200]   # 200 is a typo
engine: preview
"""


async def test_a_recipe_that_fails_its_check_opens_with_its_problems_in_place(tmp_path):
    make_demo(tmp_path)
    path = tmp_path / "recipes" / "broken.yaml"
    path.write_text(BROKEN)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot, row=0)  # broken.yaml sorts before demo.yaml
        banner = app.screen.query_one("#recipe-problems", Static)
        assert banner.display and "to fix later: pitches (the pitches step)" in str(banner.render())
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        grid = app.screen
        assert isinstance(grid, GridScreen)
        shown = str(grid.query_one("#estimate", Static).render())
        assert "error: line 5: pitches: MIDI notes are 0-127; [200] are not" in shown
        assert grid.query_one("#pitches", Input).has_class("-invalid")
        assert grid.query_one("#pitches", Input).value == "48, 200"  # as written, to fix
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)  # refused until it is fixed
        grid.query_one("#pitches", Input).value = "48, 60"
        await pilot.pause()
        assert not grid.query_one("#pitches", Input).has_class("-invalid")
        assert "unique sounds" in str(grid.query_one("#estimate", Static).render())
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert load_recipe(path).pitches == [48, 60]
    assert path.read_text() == BROKEN.replace("[48, 200]", "[48, 60]")


SLURM_TYPO = "slurm:\n  partition: gpu\n  time: soon\n  max_tasks: 2\n"  # no step edits the slurm section


async def test_a_problem_no_step_edits_is_fixed_in_the_reviews_yaml(tmp_path):
    make_demo(tmp_path)
    path = tmp_path / "recipes" / "demo.yaml"
    text = path.read_text() + SLURM_TYPO
    path.write_text(text)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        assert "slurm.time (the review step)" in str(app.screen.query_one("#recipe-problems", Static).render())
        await to_review(pilot)  # the steps let it through: not their fields
        review = app.screen
        problems = review.query_one("#review-problems", Static)
        assert problems.display and "slurm.time: 'soon': not a Slurm time" in str(problems.render())
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert path.read_text() == text  # refused: nothing written
        area = review.query_one("#yaml", TextArea)
        area.text = area.text.replace("time: soon", "time: '02:00:00'  # fixed")
        await pilot.pause()
        assert not problems.display
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert load_recipe(path).slurm.time == "02:00:00"
    assert "time: '02:00:00'  # fixed" in path.read_text()


async def test_a_device_problem_is_shown_and_fixed_on_the_settings_step(tmp_path):
    make_demo(tmp_path)
    path = tmp_path / "recipes" / "demo.yaml"
    path.write_text(path.read_text().replace("loop_start: 0.2", "loop_start: 0.9"))
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        assert "device (the settings step)" in str(app.screen.query_one("#recipe-problems", Static).render())
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await pilot.pause()
        step = app.screen
        assert isinstance(step, SettingsScreen)
        assert "loop_start (0.9) must be below loop_end (0.41)" in str(step.query_one("#recipe-problems").render())
        assert step.query_one("#device-loop-start", Input).value == "0.9"  # as written, to fix
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)  # refused until it is fixed
        step.query_one("#device-loop-start", Input).value = "0.3"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert load_recipe(path).device.loop_start == 0.3
    assert "loop_start: 0.3\n" in path.read_text()


async def test_a_recipe_that_is_not_yaml_is_a_message_not_a_crash(tmp_path):
    make_demo(tmp_path)
    (tmp_path / "recipes" / "awful.yaml").write_text("name: [\n")
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        await recipes_listed(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, RecipesScreen)
        assert "not valid YAML" in str(app.screen.query_one("#detail", Static).render())
        await pilot.press("c")  # duplicating it says why not, too
        await pilot.pause()
        assert isinstance(app.screen, RecipesScreen)


async def test_an_edit_of_the_reviews_yaml_reaches_the_steps_before_it(tmp_path):
    make_demo(tmp_path)
    path = tmp_path / "recipes" / "demo.yaml"
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_in_wizard(pilot)
        await to_review(pilot)
        area = app.screen.query_one("#yaml", TextArea)
        area.text = "# by hand\n" + area.text.replace("pitches: [48, 55, 60, 67]", "pitches: [48, 67]  # two")
        await pilot.pause()
        await pilot.press("ctrl+b", "ctrl+b")
        await pilot.pause()
        grid = app.screen
        assert isinstance(grid, GridScreen)
        assert grid.query_one("#pitches", Input).value == "48, 67"  # the step shows the edit
        await pilot.press("ctrl+n", "ctrl+n")  # and passing through it keeps it
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        assert "pitches: [48, 67]  # two" in app.screen.query_one("#yaml", TextArea).text
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert path.read_text().startswith("# by hand\n") and load_recipe(path).pitches == [48, 67]
