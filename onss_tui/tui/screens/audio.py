"""The wizard's first step: the folder of notes, scanned on a thread, with what each file is."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, DirectoryTree, Footer, Header, Input, Label, Static

from onss_tui.audio.io import AUDIO_SUFFIXES, AudioError, probe
from onss_tui.pipeline.prepare import FILE_RE, inspect_note
from onss_tui.tui.screens.step import WizardStep


class AudioTree(DirectoryTree):
    """Folders and audio files only (hidden entries left out)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in AUDIO_SUFFIXES)]


class AudioScreen(WizardStep):
    """The input folder (typed, or picked in a tree of folders and audio files), every note found
    in it, and what the prepare stage would say."""

    FIELDS = ("inputs",)
    STEP = "the audio step"

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
        try:
            shown = str(folder.resolve().relative_to(Path(self.draft.workdir).resolve())) or "."
        except ValueError:
            shown = str(folder)
        self.query_one("#inputs", Input).value = shown
        self.scan()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.scan()

    def scan(self) -> None:
        typed = self.query_one("#inputs", Input).value.strip()
        if typed:
            self.draft.set_inputs(typed)
        folder = self.draft.inputs_dir()
        table = self.query_one("#notes", DataTable)
        table.clear()
        found: dict[str, list[int]] = {}
        problems: list[str] = []
        warnings: list[str] = []
        if not folder.is_dir():
            problems.append(f"{folder}: no such folder; type the folder of your notes, or pick it in the tree")
        else:
            for f in sorted(folder.iterdir()):
                if f.suffix.lower() not in AUDIO_SUFFIXES:
                    continue
                try:
                    info = probe(f)
                except AudioError as exc:
                    problems.append(str(exc))
                    continue
                audio, found_problems, found_warnings = inspect_note(f)  # the prepare stage's own checks
                problems += found_problems
                warnings += found_warnings
                peak = f"{20 * math.log10(max(float(abs(audio).max()), 1e-9)):.1f} dB" if audio is not None else "-"
                table.add_row(f.name, str(info.samplerate), str(info.channels), f"{info.seconds:.2f}", peak)
                m = FILE_RE.match(f.stem)  # the prepare stage's own rule
                if not m:
                    problems.append(f"{f.name}: not named <instrument>_<pitch>; rename it, e.g. flute_60.wav")
                elif audio is not None:
                    found.setdefault(m["name"], []).append(int(m["pitch"]))
        self.draft.found = {k: sorted(v) for k, v in found.items()}
        summary = ", ".join(f"{k} ({len(v)})" for k, v in sorted(self.draft.found.items()))
        short = lambda text: text.replace(f"{folder}/", "")  # noqa: E731  (names, not paths, in a folder view)
        lines = ([f"instruments: {summary or 'none'}"] + [f"error: {short(p)}" for p in problems]
                 + [f"warning: {short(w)}" for w in warnings])
        self.query_one("#problems", Static).update("\n".join(lines))
        self.show_problems()

    def save(self) -> str | None:
        if not self.draft.found:
            return "no notes found: choose the folder of your <instrument>_<pitch> files"
        return super().save()
