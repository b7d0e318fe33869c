"""The wizard's first step: the folder of notes, scanned on a thread, with what each file is."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, DirectoryTree, Footer, Header, Input, Label, Static

from onss_tui.audio.io import AUDIO_SUFFIXES, AudioError, probe
from onss_tui.pipeline.prepare import FILE_RE, inspect_note, suggest_name
from onss_tui.tui.screens.step import WizardStep


class AudioTree(DirectoryTree):
    """Folders and audio files only (hidden entries left out); backspace goes up a folder."""

    BINDINGS = [("backspace", "up", "Up a folder")]

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in AUDIO_SUFFIXES)]

    def action_up(self) -> None:
        here = Path(self.path).resolve()
        if here.parent != here:
            self.path = here.parent


@dataclass
class Scan:
    """What a scan of the notes folder found: table rows, notes per instrument, problems, warnings."""

    folder: Path
    rows: list[tuple[str, ...]] = field(default_factory=list)
    found: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # files that are not audio


def scan_folder(folder: Path) -> Scan:
    """Read every audio file of ``folder`` as the prepare stage would (on a thread: it reads files)."""
    out = Scan(folder)
    if not folder.is_dir():
        out.problems.append(f"{folder}: no such folder; type the folder of your notes, or pick it in the tree")
        return out
    found: dict[str, list[int]] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in AUDIO_SUFFIXES:
            if not f.name.startswith("."):
                out.others.append(f.name + ("/" if f.is_dir() else ""))
            continue
        try:
            info = probe(f)
        except AudioError as exc:
            out.problems.append(str(exc))
            out.rows.append((f.name, "unreadable", "-", "-", "-"))
            continue
        audio, found_problems, found_warnings = inspect_note(f)  # the prepare stage's own checks
        out.problems += found_problems
        out.warnings += found_warnings
        peak = f"{20 * math.log10(max(float(abs(audio).max()), 1e-9)):.1f} dB" if audio is not None else "-"
        out.rows.append((f.name, str(info.samplerate), str(info.channels), f"{info.seconds:.2f}", peak))
        m = FILE_RE.match(f.stem)  # the prepare stage's own rule
        if not m:
            better = suggest_name(f.stem)
            advice = (f"rename it {better}{f.suffix.lower()}" if "<" not in better else
                      f"no pitch found in its name; rename it {better}{f.suffix.lower()}")
            out.problems.append(f"{f.name}: not named <instrument>_<pitch>; {advice}")
        elif audio is not None:
            found.setdefault(m["name"], []).append(int(m["pitch"]))
    out.found = {k: sorted(v) for k, v in found.items()}
    return out


def summary_lines(scan: Scan) -> list[str]:
    """The instruments found, each with the pitches it lacks compared with the others; or, with
    none, what was looked for and what the folder holds."""
    if not scan.found:
        if not scan.folder.is_dir():
            return []
        listed = ", ".join(scan.others[:3]) + (", ..." if len(scan.others) > 3 else "")
        held = f"{len(scan.others)} other files: {listed}" if scan.others else "no other files"
        if scan.rows:
            held = f"{len(scan.rows)} audio files, none usable; " + held
        return [f"no <instrument>_<pitch>.wav notes in {scan.folder} ({held}); pick the folder that holds them"]
    every = sorted({p for v in scan.found.values() for p in v})
    parts = []
    for name, pitches in sorted(scan.found.items()):
        lacking = [p for p in every if p not in pitches]
        parts.append(f"{name} ({len(pitches)})" if not lacking else
                     f"{name}: {' '.join(map(str, pitches))} (no {' '.join(map(str, lacking))})")
    return [f"instruments: {', '.join(parts)}"]


class AudioScreen(WizardStep):
    """The input folder (typed, or picked in a tree of folders and audio files), every note found
    in it, and what the prepare stage would say."""

    FIELDS = ("inputs",)
    STEP = "the audio step"

    class Scanned(Message):
        """A scan of the notes folder is done."""

        def __init__(self, scan: Scan) -> None:
            super().__init__()
            self.scan = scan

    scanning = False
    last: Scan | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="recipe-problems", classes="recipe-problems", markup=False)
        yield Label("Notes folder: <instrument>_<midi pitch>.wav files (enter scans, or pick in the tree)")
        yield Input(self.draft.inputs, id="inputs")
        with Horizontal(id="audio-main"):
            yield AudioTree(self.draft.workdir, id="tree")
            yield DataTable(id="notes", cursor_type="row")
        yield Static("", id="problems", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#notes", DataTable)
        t.add_columns("file", "rate", "ch", "seconds", "peak")
        self.scan()

    def reload(self) -> None:
        box = self.query_one("#inputs", Input)
        if box.value.strip() != self.draft.inputs:
            with box.prevent(Input.Changed):
                box.value = self.draft.inputs
            self.scan()

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        self.pick(event.path)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.pick(event.path.parent)

    def pick(self, folder: Path) -> None:
        work = Path(self.draft.workdir).resolve()
        here = folder.resolve()
        try:
            shown = str(here.relative_to(work))
        except ValueError:
            shown = str(here)
        if shown == ".":  # the work folder itself: said as a path, not a bare dot
            shown = str(here)
        self.query_one("#inputs", Input).value = shown
        self.scan()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.scan()
        folder = self.draft.inputs_dir()
        tree = self.query_one("#tree", AudioTree)
        if folder.is_dir() and folder.resolve() != Path(tree.path).resolve():
            tree.path = folder.resolve()  # the tree follows a typed folder

    def scan(self) -> None:
        typed = self.query_one("#inputs", Input).value.strip()
        if typed:
            self.draft.set_inputs(typed)
        self.scanning = True
        self.query_one("#problems", Static).update(f"scanning {self.draft.inputs_dir()} ...")
        self.read_folder(self.draft.inputs_dir())

    @work(thread=True, exclusive=True, group="scan")
    def read_folder(self, folder: Path) -> None:
        self.post_message(self.Scanned(scan_folder(folder)))

    def on_audio_screen_scanned(self, message: AudioScreen.Scanned) -> None:
        scan = message.scan
        if scan.folder != self.draft.inputs_dir():
            return  # an older scan, overtaken by a newer one
        self.scanning = False
        self.last = scan
        table = self.query_one("#notes", DataTable)
        table.clear()
        for row in scan.rows:
            table.add_row(*row)
        self.draft.found = scan.found
        short = lambda text: text.replace(f"{scan.folder}/", "")  # noqa: E731  (names, not paths, in a folder view)
        lines = (summary_lines(scan) + [f"error: {short(p)}" for p in scan.problems]
                 + [f"warning: {short(w)}" for w in scan.warnings])
        self.query_one("#problems", Static).update("\n".join(lines))
        self.show_problems()

    def save(self) -> str | None:
        if self.scanning:
            return "still scanning the notes folder; wait a moment, then press ctrl+n again"
        if self.last is not None and self.last.problems:
            folder = self.last.folder
            return (f"{self.last.problems[0].replace(f'{folder}/', '')} "
                    f"({len(self.last.problems)} error(s) in the notes folder: fix them first)")
        if not self.draft.found:
            return "no notes found: choose the folder of your <instrument>_<pitch> files"
        return super().save()
