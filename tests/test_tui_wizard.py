"""Wizard features: the folder tree, device labels, projections, disk space, the command palette,
and the 80x24 layout of every screen."""


import numpy as np
import pytest
from textual.geometry import Region
from textual.widgets import DataTable, Input, Select, Static

from onss_tui.gpu import GpuProbe, fake_probe
from onss_tui.pipeline.demo import PITCHES, make_demo
from onss_tui.pipeline.runner import Runner
from onss_tui.recipe import load_recipe
from onss_tui.tui.app import create_app
from onss_tui.tui.screens.dashboard import DashboardScreen
from onss_tui.tui.screens.environment import EnvironmentScreen
from onss_tui.tui.screens.finish import FinishScreen
from onss_tui.tui.screens.recipes import RecipesScreen
from onss_tui.tui.screens.wizard import AudioScreen, AudioTree, CornersScreen, GridScreen, ReviewScreen
from tests.helpers import recipes_listed

SIZE = (80, 24)
H100 = "NVIDIA H100 80GB HBM3"


def app_for(tmp_path, **kw):
    kw.setdefault("probe_fn", lambda: GpuProbe(problem="no NVIDIA driver"))
    kw.setdefault("torch_status", lambda: "torch 2.13.0: no CUDA")
    kw.setdefault("checkpoint_status", lambda: "checkpoint: not installed (press d, or run onss model download)")
    kw.setdefault("bench_results", lambda: [])
    return create_app(workdir=tmp_path, **kw)


@pytest.fixture()
def demo(tmp_path):
    make_demo(tmp_path)  # notes in tmp/audio: bell, pluck, saw, sine at 48, 55, 60, 67
    return tmp_path


async def walk_to(pilot, screen_type):
    for _ in range(8):  # the environment, then every step of the wizard
        if isinstance(pilot.app.screen, screen_type):
            return
        for _ in range(200):  # the audio step scans its folder on a thread; Next waits for it
            if not getattr(pilot.app.screen, "scanning", False):
                break
            await pilot.pause(0.02)
        await pilot.press("ctrl+n")
        await pilot.pause()
    raise AssertionError(f"never reached {screen_type.__name__}: at {type(pilot.app.screen).__name__}")


async def test_tree_shows_folders_and_audio_only_and_picks_a_folder(tmp_path):
    notes = tmp_path / "my notes"
    make_demo(tmp_path / "d")
    notes.mkdir()
    for f in (tmp_path / "d" / "audio").iterdir():
        (notes / f.name).write_bytes(f.read_bytes())
    (notes / "readme.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, AudioScreen)
        screen = app.screen
        tree = screen.query_one("#tree", AudioTree)
        kept = tree.filter_paths([notes, notes / "readme.txt", notes / "bell_48.wav", tmp_path / ".hidden"])
        assert list(kept) == [notes, notes / "bell_48.wav"]
        for _ in range(50):  # the tree loads in a worker
            await pilot.pause(0.05)
            if tree.root.children:
                break
        node = next(n for n in tree.root.children if n.data.path == notes)
        tree.focus()
        tree.move_cursor(node)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.query_one("#inputs", Input).value == "my notes"
        assert app.draft.found == {n: PITCHES for n in ["bell", "pluck", "saw", "sine"]}
        assert screen.query_one("#notes", DataTable).row_count == 16


async def test_corner_labels_are_edited_and_reach_the_recipe(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, CornersScreen)
        screen = app.screen
        table = screen.query_one("#labels", DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["bell", "pluck", "saw", "sine"]
        assert [str(c) for c in table.get_row_at(1)] == ["pluck", "TR", "PLUCK", "PL"]  # the defaults
        table.focus()
        await pilot.press("down")
        screen.query_one("#display", Input).focus()
        await pilot.press(*"Plucky Strings")  # 8 characters at most: the device shows 8
        screen.query_one("#abbr", Input).focus()
        await pilot.press(*"PKX")
        await pilot.pause()
        assert [str(c) for c in table.get_row_at(1)] == ["pluck", "TR", "Plucky S", "PK"]
        screen.query_one("#top_left", Input).value = "bell, saw"  # the table follows the boxes
        screen.query_one("#bottom_left", Input).value = ""
        await pilot.pause()
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["TL", "TL", "TR", "BR"]
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, CornersScreen)  # bottom left is empty: refused
        screen.query_one("#bottom_left", Input).value = "saw"
        screen.query_one("#top_left", Input).value = "bell"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        recipe = app.draft.check().recipe
        pluck = recipe.corners.top_right[0]
        assert (pluck.name, pluck.display, pluck.abbr) == ("pluck", "Plucky S", "PK")
        assert recipe.corners.top_left[0].display is None  # untouched labels stay defaults


async def test_recipe_labels_load_into_the_wizard(demo):
    recipe = demo / "recipes" / "demo.yaml"
    text = recipe.read_text().replace("top_left: [sine]", "top_left: [{name: sine, display: Glocken, abbr: GL}]")
    assert text != recipe.read_text()
    recipe.write_text(text)
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        await recipes_listed(pilot)
        assert isinstance(app.screen, RecipesScreen)
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, AudioScreen)
        await pilot.press("ctrl+n")
        await pilot.pause()
        table = app.screen.query_one("#labels", DataTable)
        assert [str(c) for c in table.get_row_at(0)] == ["sine", "TL", "Glocken", "GL"]
        await walk_to(pilot, ReviewScreen)
        assert "{name: sine, display: Glocken, abbr: GL}" in app.screen.query_one("#yaml").text


def bench(device, rate):
    return [{"device": device, "runs": [{"precision": "bf16", "batch": 4096, "samples_per_s": rate}]}]


async def test_projection_uses_measured_figures_for_the_gpus_present(demo):
    app = app_for(demo, probe_fn=lambda: fake_probe(2), bench_results=lambda: bench(H100, 2e6))
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, GridScreen)
        screen = app.screen
        screen.query_one("#engine", Select).value = "nsynth"
        await pilot.pause()
        text = str(screen.query_one("#estimate", Static).render())
        n = int(text.split(" unique")[0].replace(",", ""))
        voices = -(-n // 2)  # each GPU's share of the sounds: fewer voices than the 4096 measured
        minutes = n * 64000 / (2 * 2e6 * min(1, voices / 4096)) / 60
        assert f"on 2 x {H100} (bf16, measured)" in text
        assert (f"about {minutes:.0f} min" if minutes >= 1.5 else f"about {minutes * 60:.0f} s") in text
        screen.query_one("#gpus", Select).value = "1"
        await pilot.pause()
        assert f"on 1 x {H100}" in str(screen.query_one("#estimate", Static).render())
        assert app.draft.check().recipe.generation.gpus == 1


async def nsynth_estimate(app) -> str:
    """The grid screen's estimate with the NSynth engine picked."""
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, GridScreen)
        app.screen.query_one("#engine", Select).value = "nsynth"
        await pilot.pause()
        return str(app.screen.query_one("#estimate", Static).render())


async def test_projection_is_unknown_without_a_measurement(demo):
    l4 = "NVIDIA L4"  # a model neither this machine nor onss measured
    app = app_for(demo, probe_fn=lambda: fake_probe(1, name=l4),
                  bench_results=lambda: bench("NVIDIA A100-SXM4-40GB", 1e6))
    assert f"unknown: {l4} not measured yet (run `onss bench`" in await nsynth_estimate(app)


async def test_an_h100_nobody_benchmarked_here_is_projected_from_onss_measurement(demo):
    app = app_for(demo, probe_fn=lambda: fake_probe(1), bench_results=lambda: [])
    text = await nsynth_estimate(app)
    assert f"on 1 x {H100} (bf16, from onss's measurement of this GPU model on 2026-11-25" in text


async def test_environment_compares_free_disk_with_the_recipes_need(demo):
    free = {"bytes": 50 * 10**9}
    app = app_for(demo, disk_free=lambda folder: free["bytes"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        disk = app.screen.query_one("#disk", Static)
        shown = str(disk.render())
        assert "free disk for ./runs: 50.0 GB" in shown and "once the wizard has corners" in shown
        await walk_to(pilot, GridScreen)  # corners and pitches are set now
        free["bytes"] = 1000
        await app.run_action("environment")  # the key "e" types into the focused input here; ctrl+p has it
        await pilot.pause()
        text = str(app.screen.query_one("#disk", Static).render())
        assert "the recipe 'my-pack' needs about" in text and "NOT ENOUGH" in text
        free["bytes"] = 50 * 10**9
        await pilot.press("r")
        await pilot.pause()
        assert "enough" in str(app.screen.query_one("#disk", Static).render())


async def test_every_key_has_a_palette_entry_and_the_palette_runs_it(demo):
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        seen = set()
        for screen_type in (EnvironmentScreen, AudioScreen, CornersScreen, GridScreen, ReviewScreen):
            await walk_to(pilot, screen_type)
            screen = app.screen
            titles = {c.title for c in app.get_system_commands(screen)}
            keys = {b.description for node in (screen, app) for bs in node._bindings.key_to_bindings.values()
                    for b in bs if b.description and node.check_action(b.action, ()) is not False}
            assert keys and keys <= titles, (screen_type.__name__, keys - titles)
            seen |= keys
        assert {"Next: audio", "Next", "Back", "Save", "Save and run", "Environment", "Recipes", "Refresh"} <= seen
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Recipes")
        await until_highlighted(pilot, "Recipes")  # the palette searches in a worker
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RecipesScreen)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Run / resume", "Attach", "Duplicate", "Edit"} <= titles


async def until_highlighted(pilot, title):
    from textual.command import CommandList

    commands = pilot.app.screen.query_one(CommandList)
    for _ in range(200):
        await pilot.pause(0.05)
        if commands.highlighted is not None:
            prompt = commands.get_option_at_index(commands.highlighted).prompt
            if title in getattr(prompt, "plain", str(prompt)):
                return
    raise AssertionError(f"the palette never offered {title!r}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("fin")
    Runner.from_file(make_demo(out), device="cpu").execute()
    return out / "run"


def inside(widget, region: Region) -> bool:
    return widget.region.area > 0 and region.contains_region(widget.region)


async def test_every_screen_fits_80x24(demo, finished):
    """Each step's focusable widgets lie whole inside an 80x24 terminal, so nothing needs a bigger one."""
    screen_region = Region(0, 0, *SIZE)
    app = app_for(demo, probe_fn=lambda: fake_probe(2))
    async with app.run_test(size=SIZE) as pilot:
        for screen_type in (EnvironmentScreen, AudioScreen, CornersScreen, GridScreen, ReviewScreen):
            await walk_to(pilot, screen_type)
            await pilot.pause()
            focusable = [w for w in app.screen.focus_chain]
            assert focusable, screen_type.__name__
            outside = [w for w in focusable if not inside(w, screen_region)]
            assert not outside, (screen_type.__name__, [(w.id, w.region) for w in outside])
        app.push_screen(DashboardScreen(finished))
        await pilot.pause()
        assert inside(app.screen.query_one("#stages"), screen_region)
        app.push_screen(FinishScreen(finished))
        await pilot.pause()
        assert inside(app.screen.query_one("#mount"), screen_region)
        app.push_screen(RecipesScreen())
        await pilot.pause()
        assert inside(app.screen.query_one("#recipes"), screen_region)


async def test_bad_inputs_are_shown_with_their_fix_and_refused(demo):
    audio = demo / "audio"
    (audio / "flute.wav").write_bytes((audio / "bell_48.wav").read_bytes())  # no pitch in the name
    (audio / "oboe_60.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # not audio at all
    import soundfile as sf

    sf.write(audio / "hush_60.wav", np.zeros(32000, dtype=np.float32), 16000)  # silent
    sf.write(audio / "blip_60.wav", np.full(800, 0.5, dtype=np.float32), 16000)  # 0.05 s
    loud = np.clip(np.sin(np.arange(64000) / 5.0) * 2, -1, 1).astype(np.float32)
    sf.write(audio / "loud_60.wav", loud, 16000)  # clipped: usable, with a warning
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to(pilot, AudioScreen)
        screen = app.screen
        for _ in range(200):  # the folder is scanned on a thread
            if not screen.scanning:
                break
            await pilot.pause(0.02)
        problems = str(screen.query_one("#problems", Static).render())
        assert "flute.wav: not named <instrument>_<pitch>" in problems
        assert "error: oboe_60.wav" in problems
        assert "error: hush_60.wav: silent" in problems and "Replace it with the real note" in problems
        assert "error: blip_60.wav: only 0.05 s long" in problems
        assert "warning: loud_60.wav: clipped" in problems
        # the good notes (and the clipped one) count; the unusable ones do not
        assert "instruments: bell (4), loud: 60 (no 48 55 67), pluck (4), saw (4), sine (4)" in problems
        screen.query_one("#inputs", Input).value = "nowhere"
        await pilot.press("enter")
        await pilot.pause()
        problems = str(screen.query_one("#problems", Static).render())
        assert "nowhere: no such folder; type the folder of your notes" in problems
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, AudioScreen)  # nothing found: the wizard stays, and says why
        for bad in ("loud_60.wav", "flute.wav", "oboe_60.wav", "hush_60.wav", "blip_60.wav"):
            (audio / bad).unlink()  # back to the four demo instruments, one a corner (errors stop Next)
        screen.query_one("#inputs", Input).value = "audio"
        await pilot.press("enter")
        await walk_to(pilot, GridScreen)
        grid = app.screen
        grid.query_one("#pitches", Input).value = "48, sixty"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        grid.query_one("#pitches", Input).value = "48, 50"  # no notes at 50
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        assert app.draft.pitches == [48, 50]
        grid.query_one("#pitches", Input).value = "48, 60"
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)


async def test_recipes_mode_lists_runs_started_from_recipes_kept_elsewhere(tmp_path):
    """`onss run ~/somewhere/birds.yaml` with output under ./runs: the run shows in recipes mode
    (from the recipe stored in its run folder) and can be attached."""
    from onss_tui.recipe import save_recipe

    elsewhere = tmp_path / "elsewhere"
    recipe = load_recipe(make_demo(elsewhere))
    work = tmp_path / "work"
    path = save_recipe(recipe.model_copy(update={"name": "solo", "inputs": str(elsewhere / "audio"),
                                                 "output": str(work / "runs" / "solo")}), elsewhere / "solo.yaml")
    Runner.from_file(path, device="cpu").execute()
    app = app_for(work)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        await recipes_listed(pilot)
        table = app.screen.query_one("#recipes", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [["solo", "preview", "done", "runs/solo"]]
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and app.screen.run.path == work / "runs" / "solo"


async def test_environment_downloads_and_installs_the_checkpoint(tmp_path, golden_checkpoint, monkeypatch):
    """`d` on the environment screen: a thread worker downloads (resumable), checks and installs
    the checkpoint with a progress bar; the screen then shows it installed."""
    import tarfile

    from onss_tui.model import install
    from onss_tui.tui.app import _checkpoint_status

    tar_path = tmp_path / "served.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in sorted(golden_checkpoint.parent.iterdir()):
            tar.add(f, arcname=f"wavenet-ckpt/{f.name}")
    sizes = {f.name: f.stat().st_size for f in golden_checkpoint.parent.iterdir()}
    monkeypatch.setattr(install, "EXPECTED_SIZES", sizes)
    from tests.test_install import Server

    server = Server(tar_path.read_bytes())
    try:
        app = app_for(tmp_path, checkpoint_status=_checkpoint_status, checkpoint_url=server.url)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            text = lambda: str(app.screen.query_one("#checkpoint", Static).render())  # noqa: E731
            assert "not installed (press d" in text()
            await pilot.press("d")
            for _ in range(600):
                await pilot.pause(0.1)
                if not app.screen.downloading:
                    break
            assert install.checkpoint_info().installed and install.checkpoint_info().problem is None
            assert str(install.default_checkpoint()) in text() and "not installed" not in text()
            assert not app.screen.query_one("#download").display
            await pilot.press("d")  # once installed, d says so and does nothing
            await pilot.pause()
            assert not app.screen.downloading
    finally:
        server.close()
    assert not (install.default_models_dir() / "wavenet-ckpt.tar").exists()


async def test_a_failed_download_is_a_message_not_a_crash(tmp_path):
    app = app_for(tmp_path, checkpoint_url="http://127.0.0.1:9/nothing-listens-here.tar")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("d")
        for _ in range(300):
            await pilot.pause(0.1)
            if not app.screen.downloading:
                break
        assert not app.screen.downloading and isinstance(app.screen, EnvironmentScreen)
        assert "not installed" in str(app.screen.query_one("#checkpoint", Static).render())
        # the reason stays on the screen (not only in a notification), also after a refresh
        text = str(app.screen.query_one("#checkpoint", Static).render())
        assert "the last download failed" in text and "127.0.0.1" in text and "press d to try again" in text
        await pilot.press("r")
        await pilot.pause()
        assert "the last download failed" in str(app.screen.query_one("#checkpoint", Static).render())
