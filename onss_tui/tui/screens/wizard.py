"""The wizard: audio -> corners -> pitches and grid -> review (save, run). Keys: ctrl+n next, ctrl+b back.

The screens edit one draft (:class:`Draft`); the recipe model validates it, so the wizard and
``onss recipe check`` agree on every rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, DirectoryTree, Footer, Header, Input, Label, Select, Static, TextArea

from onss_tui.audio.io import AUDIO_SUFFIXES, AudioError, probe
from onss_tui.pipeline.grid import CORNER_NAMES, plan_sounds
from onss_tui.pipeline.prepare import FILE_RE, inspect_note
from onss_tui.recipe import Recipe, RecipeError, parse_recipe, recipe_yaml
from onss_tui.vocab import AUTO, ENGINES, ROW_LENGTH, PrecisionSetting, choices

PRESETS = {"original (24..84 step 4)": list(range(24, 85, 4)), "four octaves (36, 48, 60, 72)": [36, 48, 60, 72]}
# the engine select: what each engine costs, the wizard's default (preview) first
ENGINE_LABELS = {"preview": "preview (CPU, seconds)", "nsynth": "nsynth (GPU)"}
ENGINE_OPTIONS = [(ENGINE_LABELS.get(e, e), e) for e in sorted(ENGINES, key=lambda e: e != "preview")]
PRECISION_OPTIONS = [(p, p) for p in choices(PrecisionSetting)]


@dataclass
class Draft:
    name: str = "my-pack"
    inputs: str = "audio"
    corners: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CORNER_NAMES})
    pitches: list[int] = field(default_factory=lambda: [36, 48, 60, 72])
    resolution: int = 9
    engine: str = "preview"
    precision: str = AUTO
    gpus: str = "all"  # "all" or how many
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"display": .., "abbr": ..}
    found: dict[str, list[int]] = field(default_factory=dict)  # instrument -> pitches in the folder
    workdir: Path = field(default_factory=Path.cwd)  # recipes/ and runs/ go here

    def instrument(self, name: str) -> str | dict:
        """A bare name, or its mapping when the user set its device labels."""
        label = {k: v for k, v in self.labels.get(name, {}).items() if v}
        return {"name": name, **label} if label else name

    def data(self) -> dict:
        inputs = Path(self.inputs).expanduser()
        return {"name": self.name, "inputs": str(inputs if inputs.is_absolute() else (self.workdir / inputs).resolve()),
                "corners": {c: [self.instrument(n) for n in v] for c, v in self.corners.items()},
                "pitches": list(self.pitches), "resolution": self.resolution, "engine": self.engine,
                "generation": {"precision": self.precision,
                               "gpus": self.gpus if self.gpus == "all" else int(self.gpus)},
                "output": str((self.workdir / "runs" / self.name).resolve())}

    def recipe(self) -> Recipe:
        import yaml

        return parse_recipe(yaml.safe_dump(self.data()), "wizard")

    def load(self, recipe: Recipe, base: Path) -> None:
        """Take a saved recipe's settings (for editing it in the wizard)."""
        self.name, self.inputs = recipe.name, str(recipe.inputs_dir(base))
        self.corners = {c: [i.name for i in getattr(recipe.corners, c)] for c in CORNER_NAMES}
        self.labels = {i.name: {"display": i.display or "", "abbr": i.abbr or ""}
                       for c in recipe.corners.lists() for i in c if i.display or i.abbr}
        self.pitches, self.resolution, self.engine = list(recipe.pitches), recipe.resolution, recipe.engine
        self.precision = recipe.generation.precision
        g = recipe.generation.gpus
        self.gpus = "all" if g == "all" else str(len(g) if isinstance(g, list) else g)


class WizardStep(Screen):
    BINDINGS = [("ctrl+n", "next", "Next"), ("ctrl+b", "back", "Back")]
    NEXT: type[Screen] | None = None

    @property
    def draft(self) -> Draft:
        return self.app.draft

    def save(self) -> str | None:
        """Store the screen's fields in the draft; return a problem to show, or None."""
        return None

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

    def compose(self) -> ComposeResult:
        yield Header()
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
        self.draft.inputs = self.query_one("#inputs", Input).value.strip()
        folder = Path(self.draft.inputs).expanduser()
        folder = folder if folder.is_absolute() else self.draft.workdir / folder
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

    def save(self) -> str | None:
        if not self.draft.found:
            return "no notes found: choose the folder of your <instrument>_<pitch> files"
        return None


class CornersScreen(WizardStep):
    """Which instruments sit in which corner of the pad, drawn as the pad, and the labels the
    device shows for each (display name, 8 characters; abbreviation, 2)."""

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

    def placed(self) -> list[tuple[str, str]]:
        """(corner, name) for every name typed in the corner boxes, in device order."""
        out = []
        for corner in CORNER_NAMES:
            raw = self.query_one(f"#{corner}", Input).value
            out += [(corner, n.strip()) for n in raw.split(",") if n.strip()]
        return out

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
            return
        name = self.selected()
        if name is None or event.input.id not in ("display", "abbr"):
            return
        self.draft.labels.setdefault(name, {})[event.input.id] = event.value.strip()
        table = self.query_one("#labels", DataTable)
        display, abbr = self.label_of(name)
        table.update_cell(name, "display", display)
        table.update_cell(name, "abbr", abbr)

    def save(self) -> str | None:
        for corner in CORNER_NAMES:
            self.draft.corners[corner] = [n for c, n in self.placed() if c == corner]
        empty = [c for c in CORNER_NAMES if not self.draft.corners[c]]
        if empty:
            return f"{empty[0].replace('_', ' ')} needs at least one instrument"
        unknown = [n for c in CORNER_NAMES for n in self.draft.corners[c] if n not in self.draft.found]
        if unknown:
            return f"{unknown[0]}: no notes of it in {self.draft.inputs}"
        placed = [n for c in CORNER_NAMES for n in self.draft.corners[c]]
        twice = sorted({n for n in placed if placed.count(n) > 1})
        if twice:
            return f"{twice[0]} sits in more than one corner; each instrument may sit in one corner"
        return None


def generation_devices(draft: Draft, gpu_names: list[str]) -> list[str]:
    """The devices a run of this draft would generate on (one worker each)."""
    from onss_tui.pipeline.throughput import cpu_name

    if not gpu_names:
        return [cpu_name()]
    return gpu_names if draft.gpus == "all" else gpu_names[: int(draft.gpus)]


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
        when = project(n, 64000, devices, draft.precision, results).text
    return (f"{n:,} unique sounds, {len(plan.pads)} pad files, {size / 1e9:.2f} GB\n"
            f"generation: {when}")


class GridScreen(WizardStep):
    """Pitches, resolution, engine and precision, with live estimates."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Grid(id="form"):
            yield Label("pitches")
            yield Input(", ".join(map(str, self.draft.pitches)), id="pitches",
                        placeholder="MIDI notes, comma-separated, in device order")
            yield Label("preset")
            yield Select([(k, k) for k in PRESETS], prompt="(pick one to fill the pitches)", id="preset")
            yield Label("resolution")
            yield Input(str(self.draft.resolution), id="resolution", type="integer")
            yield Label("engine")
            yield Select(ENGINE_OPTIONS, value=self.draft.engine, allow_blank=False, id="engine")
            yield Label("precision")
            yield Select(PRECISION_OPTIONS, value=self.draft.precision, allow_blank=False, id="precision")
            yield Label("GPUs")
            count = len(self.app.probe().gpus)
            choices = [(f"all GPUs ({count})" if count else "CPU (no GPU)", "all")]
            choices += [(f"{k} GPU{'s' if k > 1 else ''}", str(k)) for k in range(1, count)]
            if self.draft.gpus not in [v for _, v in choices]:
                self.draft.gpus = "all"
            yield Select(choices, value=self.draft.gpus, allow_blank=False, id="gpus")
        yield Static("", id="estimate", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        placed = [n for c in CORNER_NAMES for n in self.draft.corners[c]]
        have = set.intersection(*(set(self.draft.found.get(n, [])) for n in placed)) if placed else set()
        if have and not set(self.draft.pitches) <= have:  # start from the pitches every instrument has
            self.draft.pitches = sorted(have)
            self.query_one("#pitches", Input).value = ", ".join(map(str, self.draft.pitches))
        self.update_estimate()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset" and event.value in PRESETS:
            self.query_one("#pitches", Input).value = ", ".join(map(str, PRESETS[event.value]))
        self.update_estimate()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.update_estimate()

    def save(self) -> str | None:
        try:
            typed = self.query_one("#pitches", Input).value.replace(" ", "").split(",")
            self.draft.pitches = [int(p) for p in typed if p]
            self.draft.resolution = int(self.query_one("#resolution", Input).value or 0)
        except ValueError:
            return "pitches are MIDI note numbers separated by commas"
        self.draft.engine = str(self.query_one("#engine", Select).value)
        self.draft.precision = str(self.query_one("#precision", Select).value)
        self.draft.gpus = str(self.query_one("#gpus", Select).value)
        missing = [f"{n} at {p}" for c in CORNER_NAMES for n in self.draft.corners[c] for p in self.draft.pitches
                   if p not in self.draft.found.get(n, [])]
        if missing:
            return f"missing notes: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
        try:
            self.draft.recipe()
        except RecipeError as exc:
            return exc.problems[0].split(": ", 2)[-1]
        return None

    def update_estimate(self) -> None:
        try:
            self.save()
        except Exception:
            pass
        devices = generation_devices(self.draft, [g.name for g in self.app.probe().gpus])
        try:
            text = estimate(self.draft, devices, self.app.bench_results())
        except ValueError as exc:
            text = str(exc)
        self.query_one("#estimate", Static).update(text)


class ReviewScreen(WizardStep):
    """The recipe as YAML; save it to recipes/NAME.yaml, and run it in the background."""

    BINDINGS = [("ctrl+s", "save_recipe", "Save"), ("ctrl+r", "run", "Save and run"), ("ctrl+b", "back", "Back")]

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return action != "next"  # the last step: save or run instead

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="review-name"):
            yield Label("recipe name")
            yield Input(self.draft.name, id="name")
        yield TextArea(recipe_yaml(self.draft.recipe()), read_only=True, id="yaml", language=None)
        yield Footer()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.draft.name = event.value.strip() or "my-pack"
        try:
            self.query_one("#yaml", TextArea).text = recipe_yaml(self.draft.recipe())
        except RecipeError as exc:
            self.query_one("#yaml", TextArea).text = "\n".join(exc.problems)

    def action_save_recipe(self) -> Path | None:
        from onss_tui.recipe import save_recipe

        try:
            recipe = self.draft.recipe()
        except RecipeError as exc:
            self.notify(exc.problems[0], severity="error")
            return None
        path = Path(self.app.workdir) / "recipes" / f"{recipe.name}.yaml"
        save_recipe(recipe, path)
        self.notify(f"saved {path}")
        self.app.saved_recipe = path
        return path

    def action_run(self) -> None:
        path = self.action_save_recipe()
        if path is not None:
            self.app.start_run(path)


AudioScreen.NEXT = CornersScreen
CornersScreen.NEXT = GridScreen
GridScreen.NEXT = ReviewScreen
