"""The wizard's settings step: what the device's settings.json says (the pads' folder on the card,
MIDI channel, OSC port, looping and its points), and, folded away, generation's and clean's
advanced settings (kernels, batch, seed, save interval, sound length, clean mode, peak level).

Each field edits one dotted recipe field; what is typed goes into the draft at once, and the
recipe model's own check says what is wrong (the same rules as ``onss recipe check``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.widget import Widget
from textual.widgets import Checkbox, Collapsible, Footer, Header, Input, Label, Select, Static

from onss_tui.tui.recipe_edit import MISSING
from onss_tui.tui.screens.audio import AudioScreen
from onss_tui.tui.screens.corners import CornersScreen
from onss_tui.tui.screens.grid import GridScreen, with_current
from onss_tui.tui.screens.step import WizardStep
from onss_tui.vocab import CLEAN_MODES, RECIPE_KERNELS


@dataclass(frozen=True)
class Setting:
    """One field of the step: a dotted recipe field, its label, and how it is typed."""

    field: str  # "device.midi_channel"
    label: str
    kind: str  # text | int | float | bool | choice | auto-int
    hint: str = ""  # the box's placeholder, or the checkbox's text
    options: tuple[str, ...] = ()  # a choice's values

    @property
    def id(self) -> str:
        return self.field.replace(".", "-").replace("_", "-")

    @property
    def name(self) -> str:
        return self.field.split(".", 1)[1]


DEVICE: tuple[Setting, ...] = (
    Setting("device.data_directory", "data folder", "text", "the pads' folder on the device, e.g. /home/pi/NAME"),
    Setting("device.midi_channel", "MIDI channel", "int", "1-16"),
    Setting("device.osc_port", "OSC port", "int", "1-65535"),
    Setting("device.loop_start", "loop start", "float", "0-1, of the row"),
    Setting("device.loop_end", "loop end", "float", "0-1, above the start"),
    Setting("device.looping", "looping", "bool", "a held note loops between the points"),
)
ADVANCED: tuple[Setting, ...] = (
    Setting("generation.kernels", "kernels", "choice", options=RECIPE_KERNELS),
    Setting("generation.batch_size", "batch", "auto-int", "auto or voices"),
    Setting("generation.seed", "seed", "int", "0 or more"),
    Setting("generation.save_every", "save every", "int", "samples"),
    Setting("generation.sample_length", "length", "int", "samples (64000 = 4 s)"),
    Setting("clean.mode", "clean", "choice", options=CLEAN_MODES),
    Setting("clean.normalize_dbfs", "peak dBFS", "float", "-60 to 0"),
)
SETTINGS = DEVICE + ADVANCED
WHAT_TYPED = {"int": "a whole number", "float": "a number", "auto-int": "auto or a whole number",
              "text": "a folder on the device, e.g. /home/pi/NAME"}


def shown(value: Any) -> str:
    """A recipe value as its box shows it."""
    return "" if value is MISSING or value is None else str(value)


def choice_options(setting: Setting, value: Any) -> list[tuple[str, str]]:
    """A choice's options, plus the recipe's value where it is none of them (kept as it is)."""
    return with_current([(o, o) for o in setting.options], shown(value), f"{shown(value)} (not one of them)")


def typed_value(setting: Setting, text: str) -> Any:
    """What a box's text sets; ValueError where it is not of the field's kind."""
    text = text.strip()
    if setting.kind == "text":
        if not text:  # (the app would look for pads in its own bin/data: never what a user means here)
            raise ValueError("empty")
        return text
    if setting.kind == "auto-int" and text == "auto":
        return text
    if setting.kind in ("int", "auto-int"):
        return int(text)
    return float(text)


class SettingsScreen(WizardStep):
    """The device's settings and, folded away, the advanced generation and clean settings."""

    FIELDS = ("device",) + tuple(s.field for s in ADVANCED)
    EARLIER = AudioScreen.FIELDS + CornersScreen.FIELDS + GridScreen.FIELDS
    STEP = "the settings step"

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="settings-body"):
            yield Static("On the device (its settings.json):", classes="section-title")
            with Grid(id="device-form", classes="settings-form"):
                yield from self.row(DEVICE)
            with Collapsible(title="Advanced: generation and clean (the defaults suit most packs)",
                             collapsed=True, id="advanced"):
                with Grid(id="advanced-form", classes="settings-form"):
                    yield from self.row(ADVANCED)
        yield Static("", id="recipe-problems", classes="recipe-problems", markup=False)
        yield Footer()

    def row(self, settings: tuple[Setting, ...]) -> ComposeResult:
        for s in settings:
            value = self.draft.section_value(s.field)
            yield Label(s.label)
            widget: Widget
            if s.kind == "bool":
                widget = Checkbox(s.hint, value=bool(value) if isinstance(value, bool) else True, id=s.id)
            elif s.kind == "choice":
                widget = Select(choice_options(s, value), value=shown(value), allow_blank=False, id=s.id)
            else:
                restrict = {"int": "integer", "float": "number"}.get(s.kind, "text")
                widget = Input(shown(value), placeholder=s.hint, id=s.id, type=restrict)  # type: ignore[arg-type]
            if s.field == "device.data_directory":
                widget.add_class("wide")
            yield widget

    def on_mount(self) -> None:
        self.show_problems()

    def setting_of(self, widget_id: str | None) -> Setting | None:
        return next((s for s in SETTINGS if s.id == widget_id), None)

    def typed_problems(self) -> list[str]:
        """What is typed that is no value of its field (the draft keeps its value until it is)."""
        out = []
        for s in SETTINGS:
            if s.kind not in WHAT_TYPED:
                continue
            text = self.query_one(f"#{s.id}", Input).value
            try:
                typed_value(s, text)
            except ValueError:
                out.append(f"{s.field}: {text.strip() or '(empty)'} is not {WHAT_TYPED[s.kind]}")
        return out

    def store(self, s: Setting, widget: Widget) -> None:
        """A field's widget into the draft."""
        if isinstance(widget, Checkbox):
            value: Any = widget.value
        elif isinstance(widget, Select):
            value = str(widget.value)
        else:
            assert isinstance(widget, Input)
            try:
                value = typed_value(s, widget.value)
            except ValueError:
                return
        section = s.field.split(".", 1)[0]
        self.draft.update_section(section, **{s.name: value})

    def changed(self, widget: Widget) -> None:
        s = self.setting_of(widget.id)
        if s is None:
            return
        self.store(s, widget)
        self.show_problems()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.changed(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        self.changed(event.select)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.changed(event.checkbox)

    def show_problems(self) -> None:
        super().show_problems()
        mine, typed = self.problems(), self.typed_problems()
        for s in SETTINGS:
            bad = (any(p.of((s.field,)) for p in mine) or any(t.startswith(s.field + ":") for t in typed)
                   or (s.name in ("loop_start", "loop_end")  # the device's rule on both points
                       and any(p.field == "device" and "loop_start" in p.message for p in mine)))
            self.query_one(f"#{s.id}").set_class(bad, "-invalid")
            if bad and s in ADVANCED:
                self.query_one("#advanced", Collapsible).collapsed = False  # a problem is never folded away

    def reload(self) -> None:
        for s in SETTINGS:
            value = self.draft.section_value(s.field)
            widget = self.query_one(f"#{s.id}")
            if isinstance(widget, Checkbox):
                if isinstance(value, bool) and widget.value != value:
                    with widget.prevent(Checkbox.Changed):
                        widget.value = value
            elif isinstance(widget, Select):
                if widget.value != shown(value):
                    with widget.prevent(Select.Changed):
                        widget.set_options(choice_options(s, value))
                        widget.value = shown(value)
            elif isinstance(widget, Input):
                try:
                    same = typed_value(s, widget.value) == value
                except ValueError:
                    same = False
                if not same:
                    with widget.prevent(Input.Changed):
                        widget.value = shown(value)

    def save(self) -> str | None:
        typed = self.typed_problems()
        if typed:
            return typed[0]
        return super().save()


__all__ = ["SettingsScreen", "Setting", "SETTINGS", "DEVICE", "ADVANCED"]
