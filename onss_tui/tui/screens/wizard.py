"""The wizard: audio -> corners -> pitches and grid -> review (save, run). Keys: ctrl+n next, ctrl+b back.

The screens edit one :class:`~onss_tui.tui.recipe_edit.Draft`: a :class:`~onss_tui.recipe.Recipe`
changed with ``model_copy(update=...)`` as fields change, so every setting of an opened recipe
survives the wizard, and its file keeps its comments and layout (recipe_edit says how). The recipe
model checks it, so the wizard and ``onss recipe check`` agree on every rule; each step shows the
problems of its own fields where they are, with the line and the fix, and the review step shows
them all (its YAML can be edited, for the fields no step has).

Every change is autosaved (the app does it, on a thread); leaving with unsaved changes asks first.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, DirectoryTree, Footer, Header, Input, Label, Select, Static, TextArea

from onss_tui.audio.io import AUDIO_SUFFIXES, AudioError, probe
from onss_tui.pipeline.grid import CORNER_NAMES, plan_sounds
from onss_tui.pipeline.prepare import FILE_RE, inspect_note
from onss_tui.recipe import Recipe, RecipeError
from onss_tui.tui.recipe_edit import Check, Draft, Problem, recipe_data
from onss_tui.vocab import ENGINES, ROW_LENGTH, PrecisionSetting, choices

__all__ = ["Draft", "AudioScreen", "CornersScreen", "GridScreen", "ReviewScreen", "UnsavedChanges", "ResumeDraft",
           "DraftSaved", "DraftSaveFailed", "SlurmResult", "submit_to_slurm"]

PRESETS = {"original (24..84 step 4)": list(range(24, 85, 4)), "four octaves (36, 48, 60, 72)": [36, 48, 60, 72]}
# the engine select: what each engine costs, the wizard's default (preview) first
ENGINE_LABELS = {"preview": "preview (CPU, seconds)", "nsynth": "nsynth (GPU)"}
ENGINE_OPTIONS = [(ENGINE_LABELS.get(e, e), e) for e in sorted(ENGINES, key=lambda e: e != "preview")]
PRECISION_OPTIONS = [(p, p) for p in choices(PrecisionSetting)]
REVIEW = "the review step"


# --------------------------------------------------------------------------------------------
# Messages from the thread workers


class DraftSaved(Message):
    """The draft was written to ``path`` (``text``, holding ``recipe``); ``then`` runs next."""

    def __init__(self, path: Path, text: str, recipe: Recipe, edited: dict, then: Callable[[Path], Any] | None):
        super().__init__()
        self.path, self.text, self.recipe, self.edited, self.then = path, text, recipe, edited, then


class DraftSaveFailed(Message):
    def __init__(self, error: str):
        super().__init__()
        self.error = error


@dataclass
class SlurmResult:
    ok: bool
    text: str  # what onss run --slurm printed: the job ids, or the error
    run_dir: Path | None


class SlurmSubmitted(Message):
    def __init__(self, result: SlurmResult):
        super().__init__()
        self.result = result


def submit_to_slurm(recipe_path: Path) -> SlurmResult:
    """``onss run RECIPE --slurm`` (a subprocess: call it on a thread)."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "onss_tui", "run", str(recipe_path), "--slurm"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SlurmResult(False, f"onss run --slurm: {exc}", None)
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return SlurmResult(False, text or f"onss run --slurm exited with {done.returncode}", None)
    from onss_tui.pipeline.runner import run_dir_of

    try:
        run_dir: Path | None = run_dir_of(recipe_path)
    except RecipeError:
        run_dir = None
    return SlurmResult(True, text or "submitted", run_dir)


# --------------------------------------------------------------------------------------------
# The steps


def problem_lines(problems: list[Problem]) -> str:
    return "\n".join(f"error: {p.short()}" for p in problems)


class WizardStep(Screen):
    BINDINGS = [("ctrl+n", "next", "Next"), ("ctrl+b", "back", "Back")]
    NEXT: type[Screen] | None = None
    FIELDS: tuple[str, ...] = ()  # the recipe fields this step edits: their problems show here
    EARLIER: tuple[str, ...] = ()  # those of the steps before it
    STEP = ""

    left_with: dict | None = None  # the draft when another screen was shown over this one

    @property
    def draft(self) -> Draft:
        return self.app.draft

    def on_screen_suspend(self) -> None:
        self.left_with = recipe_data(self.draft.recipe)

    def on_screen_resume(self) -> None:
        if self.left_with is not None and self.left_with != recipe_data(self.draft.recipe):
            self.reload()  # changed elsewhere (the review's YAML): show the draft's values
        self.show_problems()

    def reload(self) -> None:
        """Show the draft's values in the fields."""

    def problems(self, check: Check | None = None) -> list[Problem]:
        """This step's problems in the recipe as it would be saved."""
        return [p for p in (check or self.draft.check()).problems if p.of(self.FIELDS)]

    def show_problems(self) -> None:
        """Show this step's problems in place (the banner; a step may show them elsewhere)."""
        check = self.draft.check()
        mine = self.problems(check)
        lines = [f"error: {p.short()}" for p in mine]
        if self.draft.source is not None:  # an opened file: where its other problems are fixed
            later = [p for p in check.problems if p not in mine and not p.of(self.EARLIER)]
            if later:
                where = ", ".join(f"{p.field or 'the file'} ({step_of(p)})" for p in later[:3])
                lines.append(f"to fix later: {where}{' ...' if len(later) > 3 else ''}")
        try:
            banner = self.query_one("#recipe-problems", Static)
        except Exception:
            return
        banner.update("\n".join(lines))
        banner.display = bool(lines)

    def save(self) -> str | None:
        """Store the screen's fields in the draft; return a problem to show, or None."""
        mine = self.problems()
        return mine[0].short() if mine else None

    def action_next(self) -> None:
        problem = self.save()
        if problem:
            self.notify(problem, severity="error", timeout=8)
            return
        if self.NEXT is not None:
            self.app.push_screen(self.NEXT())

    def action_back(self) -> None:
        self.save()
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()


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


class CornersScreen(WizardStep):
    """Which instruments sit in which corner of the pad, drawn as the pad, and the labels the
    device shows for each (display name, 8 characters; abbreviation, 2)."""

    FIELDS = ("corners",)
    EARLIER = AudioScreen.FIELDS
    STEP = "the corners step"

    def compose(self) -> ComposeResult:
        yield Header()
        names = ", ".join(sorted(self.draft.found)) or "(none found)"
        yield Static(f"Instruments found: {names}\nNames per corner, comma-separated (the pad as you see it):",
                     markup=False)
        with Grid(id="pad"):
            for corner in CORNER_NAMES:
                box = Input(", ".join(self.draft.corners[corner]), placeholder="instrument, ...", id=corner)
                box.border_title = corner.replace("_", " ")
                yield box
        yield Static("", id="recipe-problems", classes="recipe-problems", markup=False)
        yield Label("Device labels: pick a row, then edit its display name and abbreviation")
        yield DataTable(id="labels", cursor_type="row")
        with Horizontal(id="label-edit"):
            yield Label("display")
            yield Input(id="display", max_length=8, placeholder="8 chars")
            yield Label("abbr")
            yield Input(id="abbr", max_length=2, placeholder="2")
        yield Footer()

    def on_mount(self) -> None:
        names = sorted(self.draft.found)
        if not any(self.draft.corners.values()) and len(names) >= 4:  # a start: one instrument a corner
            for corner, name in zip(CORNER_NAMES, names):
                self.query_one(f"#{corner}", Input).value = name
        table = self.query_one("#labels", DataTable)
        table.add_column("instrument", key="name")
        table.add_column("corner", key="corner")
        table.add_column("display", key="display")
        table.add_column("abbr", key="abbr")
        self.fill_labels()
        self.show_problems()

    def reload(self) -> None:
        for corner, names in self.draft.corners.items():
            box = self.query_one(f"#{corner}", Input)
            if self.typed()[corner] != names:
                with box.prevent(Input.Changed):
                    box.value = ", ".join(names)
        self.fill_labels()

    def placed(self) -> list[tuple[str, str]]:
        """(corner, name) for every name typed in the corner boxes, in device order."""
        out = []
        for corner in CORNER_NAMES:
            raw = self.query_one(f"#{corner}", Input).value
            out += [(corner, n.strip()) for n in raw.split(",") if n.strip()]
        return out

    def typed(self) -> dict[str, list[str]]:
        placed = self.placed()
        return {c: [n for corner, n in placed if corner == c] for c in CORNER_NAMES}

    def label_of(self, name: str) -> tuple[str, str]:
        """The labels the device will show: the user's, else the defaults the recipe derives."""
        label = self.draft.labels.get(name, {})
        return label.get("display") or name.upper()[:8], label.get("abbr") or name.upper()[:2]

    def fill_labels(self) -> None:
        table = self.query_one("#labels", DataTable)
        row = table.cursor_row
        table.clear()
        short = {"top_left": "TL", "top_right": "TR", "bottom_left": "BL", "bottom_right": "BR"}
        for corner, name in self.placed():
            if name not in table.rows:
                table.add_row(name, short[corner], *self.label_of(name), key=name)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
            self.show_label()

    def selected(self) -> str | None:
        table = self.query_one("#labels", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def show_label(self) -> None:
        name = self.selected()
        label = self.draft.labels.get(name, {}) if name else {}
        display, abbr = self.query_one("#display", Input), self.query_one("#abbr", Input)
        with display.prevent(Input.Changed), abbr.prevent(Input.Changed):
            display.value, abbr.value = label.get("display", ""), label.get("abbr", "")
            if name:
                display.placeholder, abbr.placeholder = self.label_of(name)[0], self.label_of(name)[1]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_label()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in CORNER_NAMES:
            self.fill_labels()
            self.draft.set_corners(self.typed())
            self.show_problems()
            return
        name = self.selected()
        if name is None or event.input.id not in ("display", "abbr"):
            return
        self.draft.set_label(name, event.input.id, event.value.strip())
        table = self.query_one("#labels", DataTable)
        display, abbr = self.label_of(name)
        table.update_cell(name, "display", display)
        table.update_cell(name, "abbr", abbr)
        self.show_problems()

    def save(self) -> str | None:
        self.draft.set_corners(self.typed())
        corners = self.draft.corners
        empty = [c for c in CORNER_NAMES if not corners[c]]
        if empty:
            return f"{empty[0].replace('_', ' ')} needs at least one instrument"
        unknown = [n for c in CORNER_NAMES for n in corners[c] if n not in self.draft.found]
        if unknown:
            return f"{unknown[0]}: no notes of it in {self.draft.inputs}"
        placed = [n for c in CORNER_NAMES for n in corners[c]]
        twice = sorted({n for n in placed if placed.count(n) > 1})
        if twice:
            return f"{twice[0]} sits in more than one corner; each instrument may sit in one corner"
        return super().save()


def generation_devices(draft: Draft, gpu_names: list[str]) -> list[str]:
    """The devices a run of this draft would generate on (one worker each)."""
    from onss_tui.pipeline.throughput import cpu_name

    if not gpu_names:
        return [cpu_name()]
    gpus = draft.gpus
    if isinstance(gpus, list):
        picked = [gpu_names[i] for i in gpus if isinstance(i, int) and 0 <= i < len(gpu_names)]
        return picked or gpu_names
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1:
        return gpu_names[:gpus]
    return gpu_names


def estimate(draft: Draft, devices: list[str], results: list[dict] | None = None) -> str:
    """Unique sounds, pads, their size, and the projected generation time from measured figures."""
    from onss_tui.pipeline.throughput import project

    corners = [draft.corners[c] for c in CORNER_NAMES]
    if not all(corners) or not draft.pitches or draft.resolution < 2:
        return "fill in corners, pitches and resolution for estimates"
    plan = plan_sounds(corners, draft.pitches, draft.resolution)
    n = len(plan.sounds)
    size = len(plan.pads) * draft.resolution ** 2 * len(draft.pitches) * ROW_LENGTH * 2
    if draft.engine == "preview":
        when = "seconds on the CPU (preview engine)"
    else:
        length = draft.recipe.generation.sample_length
        length = length if isinstance(length, int) and length > 0 else 64000
        when = project(n, length, devices, draft.precision, results).text
    return (f"{n:,} unique sounds, {len(plan.pads)} pad files, {size / 1e9:.2f} GB\n"
            f"generation: {when}")


def gpus_key(gpus: Any) -> str:
    """A generation.gpus setting as a select's value: all, a count, or a list of GPU numbers."""
    return json.dumps(gpus) if isinstance(gpus, list) else str(gpus)


def gpus_value(key: str) -> Any:
    if key.startswith("["):
        return json.loads(key)
    return int(key) if key.isdigit() else key


def with_current(options: list[tuple[str, str]], value: str, label: str) -> list[tuple[str, str]]:
    """A select's options, plus the recipe's value where it is not one of them (kept as it is)."""
    return options if value in [v for _, v in options] else options + [(label, value)]


class GridScreen(WizardStep):
    """Pitches, resolution, engine and precision, with live estimates."""

    FIELDS = ("pitches", "resolution", "engine", "generation.precision", "generation.gpus")
    EARLIER = AudioScreen.FIELDS + CornersScreen.FIELDS
    STEP = "the pitches step"
    WIDGETS = {"pitches": "#pitches", "resolution": "#resolution", "engine": "#engine",
               "generation.precision": "#precision", "generation.gpus": "#gpus"}

    def compose(self) -> ComposeResult:
        yield Header()
        values, options = self.values(), self.options()
        with Grid(id="form"):
            yield Label("pitches")
            yield Input(values["pitches"], id="pitches", placeholder="MIDI notes, comma-separated, in device order")
            yield Label("preset")
            yield Select([(k, k) for k in PRESETS], prompt="(pick one to fill the pitches)", id="preset")
            yield Label("resolution")
            yield Input(values["resolution"], id="resolution", type="integer")
            for name, label in (("engine", "engine"), ("precision", "precision"), ("gpus", "GPUs")):
                yield Label(label)
                yield Select(options[name], value=values[name], allow_blank=False, id=name)
        yield Static("", id="estimate", markup=False)
        yield Footer()

    def values(self) -> dict[str, str]:
        """The draft's values, as the fields show them."""
        recipe = self.draft.recipe
        pitches = recipe.pitches
        return {"pitches": ", ".join(map(str, pitches)) if isinstance(pitches, list) else str(pitches),
                "resolution": str(recipe.resolution), "engine": str(recipe.engine),
                "precision": str(recipe.generation.precision), "gpus": gpus_key(recipe.generation.gpus)}

    def options(self) -> dict[str, list[tuple[str, str]]]:
        """Each select's options; a value of the recipe that is not one of them is kept as one."""
        values = self.values()
        count = len(self.app.probe().gpus)
        gpus = [(f"all GPUs ({count})" if count else "CPU (no GPU)", "all")]
        gpus += [(f"{k} GPU{'s' if k > 1 else ''}", str(k)) for k in range(1, count)]
        setting = self.draft.recipe.generation.gpus
        shown = (f"GPUs {', '.join(map(str, setting))} (the recipe's)" if isinstance(setting, list)
                 else f"{setting} GPU{'s' if setting != 1 else ''} (the recipe's)")
        return {"engine": with_current(ENGINE_OPTIONS, values["engine"], f"{values['engine']} (not an engine)"),
                "precision": with_current(PRECISION_OPTIONS, values["precision"],
                                          f"{values['precision']} (not a precision)"),
                "gpus": with_current(gpus, values["gpus"], shown)}

    def reload(self) -> None:
        values, options = self.values(), self.options()
        for name in ("pitches", "resolution"):
            box = self.query_one(f"#{name}", Input)
            if box.value != values[name]:
                with box.prevent(Input.Changed):
                    box.value = values[name]
        for name in ("engine", "precision", "gpus"):
            select = self.query_one(f"#{name}", Select)
            if select.value != values[name]:
                with select.prevent(Select.Changed):
                    select.set_options(options[name])
                    select.value = values[name]
        self.update_estimate()

    def on_mount(self) -> None:
        placed = [n for c in CORNER_NAMES for n in self.draft.corners[c]]
        have = set.intersection(*(set(self.draft.found.get(n, [])) for n in placed)) if placed else set()
        # a new recipe starts from the pitches every instrument has (an opened one keeps its own)
        if self.draft.source is None and have and not set(self.draft.pitches) <= have:
            self.query_one("#pitches", Input).value = ", ".join(map(str, sorted(have)))
            self.draft.update(pitches=sorted(have))
        self.update_estimate()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset" and event.value in PRESETS:
            self.query_one("#pitches", Input).value = ", ".join(map(str, PRESETS[event.value]))
        self.update_estimate()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.update_estimate()

    def commit(self) -> str | None:
        """The fields into the draft; a problem with what is typed, or None."""
        problem = None
        try:
            typed = self.query_one("#pitches", Input).value.replace(" ", "").split(",")
            self.draft.update(pitches=[int(p) for p in typed if p])
        except ValueError:
            problem = "pitches are MIDI note numbers separated by commas"
        try:
            self.draft.update(resolution=int(self.query_one("#resolution", Input).value or 0))
        except ValueError:
            problem = problem or "the resolution is a whole number (2 to 33)"
        self.draft.update(engine=str(self.query_one("#engine", Select).value))
        self.draft.update_generation(precision=str(self.query_one("#precision", Select).value),
                                     gpus=gpus_value(str(self.query_one("#gpus", Select).value)))
        return problem

    def save(self) -> str | None:
        problem = self.commit()
        if problem:
            return problem
        missing = [f"{n} at {p}" for c in CORNER_NAMES for n in self.draft.corners[c] for p in self.draft.pitches
                   if p not in self.draft.found.get(n, [])]
        if missing:
            return f"missing notes: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
        return super().save()

    def update_estimate(self) -> None:
        typed_problem = self.commit()
        mine = self.problems()
        for field, selector in self.WIDGETS.items():
            self.query_one(selector).set_class(any(p.of((field,)) for p in mine), "-invalid")
        if typed_problem or mine:  # the problems in place of the estimate, until they are fixed
            self.query_one("#estimate", Static).update(
                "\n".join(([f"error: {typed_problem}"] if typed_problem else []) + [f"error: {p.short()}"
                                                                                    for p in mine]))
            return
        devices = generation_devices(self.draft, [g.name for g in self.app.probe().gpus])
        try:
            text = estimate(self.draft, devices, self.app.bench_results())
        except ValueError as exc:
            text = str(exc)
        self.query_one("#estimate", Static).update(text)


class ReviewScreen(WizardStep):
    """The recipe as it will be saved (the opened file with only what changed replaced; editable,
    for the settings no step has); save it to recipes/NAME.yaml, run it in the background, or
    submit it to Slurm."""

    BINDINGS = [("ctrl+s", "save_recipe", "Save"), ("ctrl+r", "run", "Save and run"),
                Binding("ctrl+l", "slurm", "Run on Slurm"), ("ctrl+b", "back", "Back")]
    STEP = REVIEW

    def __init__(self) -> None:
        super().__init__()
        self.sbatch: str | None = None  # where sbatch is, once looked up (on a thread)
        self.pending: list[Problem] = []  # the edited YAML's problems while it is no recipe at all

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "next":
            return False  # the last step: save or run instead
        if action == "slurm":
            return self.sbatch is not None and self.draft.recipe.slurm is not None
        return True

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="review-name"):
            yield Label("recipe name")
            yield Input(self.draft.name, id="name")
        check = self.draft.check()
        yield TextArea(check.text, id="yaml", language=None)
        yield Static(problem_lines(check.problems), id="review-problems", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#review-problems", Static).display = bool(self.draft.check().problems)
        self.run_worker(self._find_sbatch, thread=True, group="sbatch")

    def _find_sbatch(self) -> None:
        found = shutil.which("sbatch")
        self.app.call_from_thread(self._sbatch_found, found)

    def _sbatch_found(self, found: str | None) -> None:
        self.sbatch = found
        self.refresh_bindings()

    def show(self, check: Check | None = None, text: bool = True) -> None:
        check = check or self.draft.check()
        if text:
            area = self.query_one("#yaml", TextArea)
            if area.text != check.text:
                with area.prevent(TextArea.Changed):
                    area.text = check.text
        problems = self.pending or check.problems
        shown = self.query_one("#review-problems", Static)
        shown.update(problem_lines(problems))
        shown.display = bool(problems)
        self.refresh_bindings()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "name":
            return
        self.draft.rename(event.value.strip() or "my-pack")
        self.show()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        text = event.text_area.text
        if text == self.draft.render():
            self.pending = []
            self.show(text=False)
            return
        try:
            self.draft.edit_text(text)
        except RecipeError as exc:
            self.pending = [Problem.parse(p) for p in exc.problems]
        else:
            self.pending = []
            name = self.query_one("#name", Input)
            if name.value.strip() != self.draft.name:
                with name.prevent(Input.Changed):
                    name.value = self.draft.name
        self.show(text=False)

    def save(self) -> str | None:
        return None

    def ready(self) -> bool:
        """Whether the recipe can be saved; says why not."""
        problems = self.pending or self.draft.check().problems
        if problems:
            self.notify(problems[0].short(), severity="error", timeout=10)
            return False
        return True

    def action_save_recipe(self) -> None:
        if self.ready():
            self.app.save_draft()

    def action_run(self) -> None:
        if self.ready():
            self.app.save_draft(then=self.app.start_run)

    def action_slurm(self) -> None:
        if self.ready():
            self.app.save_draft(then=self.submit)

    def submit(self, path: Path) -> None:
        self.notify(f"submitting {path.name} to Slurm ...")
        self.run_worker(lambda: self.post_message(SlurmSubmitted(submit_to_slurm(path))), thread=True,
                        group="slurm")

    def on_slurm_submitted(self, message: SlurmSubmitted) -> None:
        from onss_tui.tui.screens.dashboard import DashboardScreen

        result = message.result
        shown = self.query_one("#review-problems", Static)
        shown.update(result.text if result.ok else f"error: {result.text}")
        shown.display = True
        self.notify(result.text.splitlines()[0] if result.ok else result.text, timeout=15,
                    severity="information" if result.ok else "error")
        if result.ok and result.run_dir is not None:
            self.app.push_screen(DashboardScreen(result.run_dir))


def step_of(problem: Problem) -> str:
    for screen in (AudioScreen, CornersScreen, GridScreen):
        if problem.of(screen.FIELDS):
            return screen.STEP
    return REVIEW


AudioScreen.NEXT = CornersScreen
CornersScreen.NEXT = GridScreen
GridScreen.NEXT = ReviewScreen


# --------------------------------------------------------------------------------------------
# Unsaved work: asked before it is left, offered back after a crash


class UnsavedChanges(ModalScreen[str]):
    """Save / discard / cancel, before the draft's unsaved changes would be lost."""

    BINDINGS = [("escape", "dismiss('cancel')", "Cancel")]

    def __init__(self, name: str, doing: str = "quit"):
        super().__init__()
        self.recipe_name, self.doing = name, doing

    def compose(self) -> ComposeResult:
        with Vertical(id="unsaved", classes="dialog"):
            yield Label(f"The recipe '{self.recipe_name}' has unsaved changes. Save them before you {self.doing}?")
            with Horizontal():
                yield Button("Save", variant="primary", id="save")
                yield Button("Discard", variant="error", id="discard")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))


class ResumeDraft(ModalScreen[str]):
    """The unsaved recipe a previous session left (autosaved): resume it, or discard it."""

    BINDINGS = [("escape", "dismiss('later')", "Later")]

    def __init__(self, draft: Draft, when: float):
        super().__init__()
        self.draft, self.when = draft, when

    def compose(self) -> ComposeResult:
        import time

        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.when))
        where = f" (from {self.draft.source.name})" if self.draft.source else ""
        with Vertical(id="resume", classes="dialog"):
            yield Label(f"Resume the unsaved recipe '{self.draft.name}'{where}? Last changed {stamp}.")
            with Horizontal():
                yield Button("Resume", variant="primary", id="resume-yes")
                yield Button("Discard", variant="error", id="resume-discard")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss("resume" if event.button.id == "resume-yes" else "discard")
