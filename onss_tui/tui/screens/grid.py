"""The wizard's pitches step: pitches, resolution, engine, precision and GPUs, with live estimates."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid
from textual.message import Message
from textual.widgets import Footer, Header, Input, Label, Select, Static

from onss_tui.pipeline.grid import CORNER_NAMES, plan_sounds
from onss_tui.pipeline.throughput import PreviewCost
from onss_tui.tui.recipe_edit import Draft
from onss_tui.tui.screens.audio import AudioScreen
from onss_tui.tui.screens.corners import CornersScreen
from onss_tui.tui.screens.step import WizardStep
from onss_tui.vocab import ENGINES, ROW_LENGTH, PrecisionSetting, choices

PRESETS = {"original (24..84 step 4)": list(range(24, 85, 4)), "four octaves (36, 48, 60, 72)": [36, 48, 60, 72]}
# the engine select: what each engine costs, the wizard's default (preview) first
ENGINE_LABELS = {"preview": "preview (CPU)", "nsynth": "nsynth (GPU)"}
ENGINE_OPTIONS = [(ENGINE_LABELS.get(e, e), e) for e in sorted(ENGINES, key=lambda e: e != "preview")]
PRECISION_OPTIONS = [(p, p) for p in choices(PrecisionSetting)]




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


def estimate(draft: Draft, devices: list[str], results: list[dict] | None = None,
             preview: PreviewCost | None = None) -> str:
    """Unique sounds, pads, their size, and the projected generation time from measured figures
    (the preview engine's from ``preview``, measured on this CPU)."""
    from onss_tui.pipeline.throughput import preview_projection, project

    corners = [draft.corners[c] for c in CORNER_NAMES]
    if not all(corners) or not draft.pitches or draft.resolution < 2:
        return "fill in corners, pitches and resolution for estimates"
    plan = plan_sounds(corners, draft.pitches, draft.resolution)
    n, pads = len(plan.sounds), len(plan.pads)
    size = pads * draft.resolution ** 2 * len(draft.pitches) * ROW_LENGTH * 2
    if draft.engine == "preview":
        when = ("measuring the preview engine on this CPU ..." if preview is None
                else preview_projection(n, preview).text)
    else:
        length = draft.recipe.generation.sample_length
        length = length if isinstance(length, int) and length > 0 else 64000
        when = project(n, length, devices, draft.precision, results).text
    return (f"{n:,} unique sounds, {pads} pad file{'s' if pads != 1 else ''}, {size / 1e9:.2f} GB\n"
            f"generation: {when}")


def missing_notes(draft: Draft, pitches: list[int] | None = None) -> dict[int, list[str]]:
    """Per pitch, the placed instruments with no note at it in the notes folder (empty before a scan)."""
    if not draft.found:
        return {}
    placed = [n for c in CORNER_NAMES for n in draft.corners[c] if n in draft.found]
    out: dict[int, list[str]] = {}
    for p in draft.pitches if pitches is None else pitches:
        if not 0 <= p <= 127:
            continue  # no MIDI note: the recipe's check says so
        lacking = [n for n in placed if p not in draft.found[n]]
        if lacking:
            out[p] = lacking
    return out


def missing_text(missing: dict[int, list[str]], limit: int = 4) -> str:
    """'bell at 67; saw, sine at 84' (at most ``limit`` pitches, then how many more)."""
    parts = [f"{', '.join(names)} at {p}" for p, names in sorted(missing.items())]
    more = f" and {len(parts) - limit} more pitch(es)" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def preset_label(name: str, pitches: list[int], missing: dict[int, list[str]], scanned: bool) -> str:
    """A preset as the select offers it: whether the notes cover it."""
    if not scanned:
        return name
    if not missing:
        return f"{name}: every note there"
    return f"{name}: {len(missing)} of {len(pitches)} pitches lack notes"


class PreviewMeasured(Message):
    """The preview engine's cost on this CPU, measured on a thread."""

    def __init__(self, cost: PreviewCost):
        super().__init__()
        self.cost = cost


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
            yield Input(values["pitches"], id="pitches", placeholder="MIDI notes, comma-separated, in device order",
                        classes="wide")
            yield Label("preset")
            yield Select(self.preset_options(), prompt="(pick one to fill the pitches)", id="preset", classes="wide")
            yield Label("resolution")
            yield Input(values["resolution"], id="resolution", type="integer", placeholder="2-33")
            for name, label in (("engine", "engine"), ("precision", "precision"), ("gpus", "GPUs")):
                yield Label(label)
                yield Select(options[name], value=values[name], allow_blank=False, id=name)
        yield Static("", id="pitch-hint", markup=False)
        yield Static("", id="estimate", markup=False)
        yield Footer()

    def preset_options(self) -> list[tuple[str, str]]:
        scanned = bool(self.draft.found)
        return [(preset_label(k, v, missing_notes(self.draft, v), scanned), k) for k, v in PRESETS.items()]

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

    preview: PreviewCost | None = None  # the preview engine's cost here, once measured
    left_out = ""  # the pitches a new recipe's start left out, and why

    def on_mount(self) -> None:
        placed = [n for c in CORNER_NAMES for n in self.draft.corners[c]]
        found = [set(self.draft.found.get(n, [])) for n in placed]
        have = set.intersection(*found) if found else set()
        # a new recipe starts from the pitches every instrument has (an opened one keeps its own), and says
        # which pitches some instrument lacks
        if self.draft.source is None and have and not set(self.draft.pitches) <= have:
            some = sorted(set.union(*found) - have)
            if some:
                self.left_out = (f"left out {', '.join(map(str, some))}: not every instrument has a note there "
                                 f"({missing_text(missing_notes(self.draft, some), 3)})")
            self.query_one("#pitches", Input).value = ", ".join(map(str, sorted(have)))
            self.draft.update(pitches=sorted(have))
        self.measure_preview()
        self.update_estimate()

    def measure_preview(self) -> None:
        """The preview engine's cost on this CPU, measured once on a thread (a fraction of a second)."""
        from onss_tui.pipeline.throughput import preview_cost

        g, clean = self.draft.recipe.generation, self.draft.recipe.clean
        length = g.sample_length if isinstance(g.sample_length, int) and g.sample_length >= 512 else 64000
        mode = str(getattr(clean, "mode", "mp3"))
        self.run_worker(lambda: self.post_message(PreviewMeasured(preview_cost(length, mode))), thread=True,
                        group="preview-cost", exclusive=True)

    def on_preview_measured(self, message: PreviewMeasured) -> None:
        self.preview = message.cost
        self.update_estimate()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        preset = self.query_one("#preset", Select)
        with preset.prevent(Select.Changed):
            preset.set_options(self.preset_options())  # the notes or corners may have changed meanwhile

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
        missing = missing_notes(self.draft)
        if missing:
            return f"missing notes: {missing_text(missing)}; remove those pitches or add the notes"
        return super().save()

    def update_estimate(self) -> None:
        typed_problem = self.commit()
        mine = self.problems()
        missing = missing_notes(self.draft)
        for field, selector in self.WIDGETS.items():
            self.query_one(selector).set_class(any(p.of((field,)) for p in mine)
                                               or (field == "pitches" and bool(missing)), "-invalid")
        hint = self.query_one("#pitch-hint", Static)
        hint.update(self.left_out if not missing else "")
        hint.display = bool(self.left_out and not missing)
        errors = ([f"error: {typed_problem}"] if typed_problem else []) + [f"error: {p.short()}" for p in mine]
        if missing:
            errors.append(f"error: missing notes: {missing_text(missing)}; remove those pitches or add the notes")
        if errors:  # the problems in place of the estimate, until they are fixed
            self.query_one("#estimate", Static).update("\n".join(errors))
            return
        devices = generation_devices(self.draft, [g.name for g in self.app.probe().gpus])
        try:
            text = estimate(self.draft, devices, self.app.bench_results(), self.preview)
        except ValueError as exc:
            text = str(exc)
        self.query_one("#estimate", Static).update(text)
