"""The wizard's audio and corners steps as a newcomer meets them (issue 16): the scan on a thread,
errors that stop Next, advice from the file's own name, unreadable files listed, missing pitches
named, a tree that goes up and follows a typed folder."""

from pathlib import Path

from textual.widgets import DataTable, Input, Static

from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.prepare import FILE_RE, suggest_name
from onss_tui.tui.screens.wizard import AudioScreen, AudioTree, CornersScreen
from tests.helpers import write_notes
from tests.test_tui_wizard import SIZE, app_for


def test_suggested_names_come_from_the_files_own_name():
    assert suggest_name("Piano 60") == "piano_60"
    assert suggest_name("Violin-072") == "violin_72"
    assert suggest_name("French Horn") == "french-horn_<midi pitch>"
    assert FILE_RE.match(suggest_name("Piano 60"))


async def until_scanned(pilot):
    screen = pilot.app.screen
    for _ in range(200):
        await pilot.pause(0.02)
        if isinstance(screen, AudioScreen) and not screen.scanning:
            break
    assert not screen.scanning
    await pilot.pause()


async def to_audio(pilot):
    await pilot.press("ctrl+n")
    await pilot.pause()
    assert isinstance(pilot.app.screen, AudioScreen)
    await until_scanned(pilot)
    return pilot.app.screen


def problems_of(screen) -> str:
    return str(screen.query_one("#problems", Static).render())


async def test_errors_stop_next_and_advice_names_the_file(tmp_path):
    make_demo(tmp_path)
    audio = tmp_path / "audio"
    (audio / "Piano 60.wav").write_bytes((audio / "bell_48.wav").read_bytes())
    (audio / "oboe_60.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # not audio at all
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_audio(pilot)
        text = problems_of(screen)
        assert "Piano 60.wav: not named <instrument>_<pitch>; rename it piano_60.wav" in text
        assert "flute" not in text
        table = screen.query_one("#notes", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert ["oboe_60.wav", "unreadable", "-", "-", "-"] in [list(r) for r in rows]
        assert "error: oboe_60.wav" in text
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, AudioScreen)  # refused: the errors come first
        (audio / "Piano 60.wav").unlink()
        (audio / "oboe_60.wav").unlink()
        screen.query_one("#inputs", Input).focus()
        await pilot.press("enter")
        await until_scanned(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, CornersScreen)


async def test_next_waits_for_a_running_scan(tmp_path):
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_audio(pilot)
        screen.scanning = True  # as between enter and the scan's message
        assert "still scanning" in (screen.save() or "")
        screen.scan()
        await until_scanned(pilot)
        assert screen.save() is None


async def test_missing_pitches_and_an_empty_folder_are_said(tmp_path):
    write_notes(tmp_path / "audio", ["cello"], [60, 64, 72])
    write_notes(tmp_path / "audio", ["violin"], [60, 64])
    (tmp_path / "other").mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / "other" / name).write_text("x")
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_audio(pilot)
        assert "violin: 60 64 (no 72)" in problems_of(screen)
        assert "cello (3)" in problems_of(screen)
        screen.query_one("#inputs", Input).value = "other"
        screen.query_one("#inputs", Input).focus()
        await pilot.press("enter")
        await until_scanned(pilot)
        text = problems_of(screen)
        assert f"no <instrument>_<pitch>.wav notes in {tmp_path / 'other'}" in text
        assert "3 other files: a.txt, b.txt, c.txt" in text and "pick the folder that holds them" in text


async def test_the_tree_goes_up_and_follows_a_typed_folder(tmp_path):
    work = tmp_path / "work"
    make_demo(work)
    app = app_for(work)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_audio(pilot)
        tree = screen.query_one("#tree", AudioTree)
        tree.focus()
        await pilot.press("backspace")
        await pilot.pause()
        assert Path(tree.path).resolve() == tmp_path.resolve()
        box = screen.query_one("#inputs", Input)
        box.value = str(work / "audio")
        box.focus()
        await pilot.press("enter")
        await until_scanned(pilot)
        assert Path(tree.path).resolve() == (work / "audio").resolve()
        tree.path = work
        for _ in range(100):
            await pilot.pause(0.02)
            if tree.root.children:
                break
        tree.focus()
        tree.move_cursor(tree.root)
        await pilot.press("enter")
        await until_scanned(pilot)
        assert box.value == str(work.resolve())  # the folder itself, never a bare '.'


async def to_corners(pilot):
    await to_audio(pilot)
    await pilot.press("ctrl+n")
    await pilot.pause()
    assert isinstance(pilot.app.screen, CornersScreen)
    return pilot.app.screen


async def test_corners_flag_unknown_and_twice_placed_instruments_as_typed(tmp_path):
    make_demo(tmp_path)  # bell, pluck, saw, sine
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_corners(pilot)
        tl = screen.query_one("#top_left", Input)
        tl.value = "bell, flute"
        await pilot.pause()
        assert tl.border_subtitle == "flute: no notes" and tl.has_class("-invalid")
        br = screen.query_one("#bottom_right", Input)
        br.value = "sine, bell"
        await pilot.pause()
        assert "bell: in 2 corners" in (br.border_subtitle or "")
        tl.value = "bell"
        br.value = "sine"
        await pilot.pause()
        assert not tl.border_subtitle and not tl.has_class("-invalid") and not br.border_subtitle


async def test_corners_flag_an_abbreviation_clash_and_a_cut_display_name(tmp_path):
    write_notes(tmp_path / "audio", ["violin", "vibes", "trumpetsection", "bass"], [60, 64])
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_corners(pilot)
        for corner, name in zip(("top_left", "top_right", "bottom_left", "bottom_right"),
                                ("violin", "vibes", "trumpetsection", "bass")):
            screen.query_one(f"#{corner}", Input).value = name
        await pilot.pause()
        hint = str(screen.query_one("#label-hint", Static).render())
        assert "violin and vibes are both 'VI' on the device; give vibes another, e.g. VB" in hint
        table = screen.query_one("#labels", DataTable)
        table.move_cursor(row=[str(k.value) for k in table.rows].index("trumpetsection"))
        await pilot.pause()
        hint = str(screen.query_one("#label-hint", Static).render())
        assert "trumpetsection: shown as 'TRUMPETS' on the device (8 characters)" in hint
        table.move_cursor(row=[str(k.value) for k in table.rows].index("vibes"))
        await pilot.pause()
        screen.query_one("#abbr", Input).value = "VB"
        await pilot.pause()
        assert "both 'VI'" not in str(screen.query_one("#label-hint", Static).render())
        assert app.draft.labels["vibes"]["abbr"] == "VB"


async def test_the_abbreviation_box_shows_two_characters_at_80_columns(tmp_path):
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_corners(pilot)
        abbr = screen.query_one("#abbr", Input)
        assert abbr.content_region.width >= 3  # two characters and the cursor after them
        display = screen.query_one("#display", Input)
        assert display.content_region.width >= 9


async def test_focus_is_a_border_of_its_own_not_only_a_shade(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTUAL_COLOR_SYSTEM", "256")
    make_demo(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_corners(pilot)
        tl, tr = screen.query_one("#top_left", Input), screen.query_one("#top_right", Input)
        tl.focus()
        await pilot.pause()
        assert tl.styles.border.top[1] != tr.styles.border.top[1]
        table = screen.query_one("#labels", DataTable)
        table.focus()
        await pilot.pause()
        assert table.styles.border.top[0] == "round" and table.styles.border.top[1] != tr.styles.border.top[1]
