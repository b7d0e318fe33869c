"""Unsaved work: asked before it is left, offered back after a crash; a run the dry run warns about."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from onss_tui.tui.recipe_edit import Draft


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


class ConfirmRun(ModalScreen[str]):
    """A run the dry run warns about (NSynth on the CPU): run it anyway, or not."""

    BINDINGS = [("escape", "dismiss('cancel')", "Cancel")]

    def __init__(self, warning: str):
        super().__init__()
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-run", classes="dialog"):
            yield Label(self.warning)
            with Horizontal():
                yield Button("Cancel", variant="primary", id="cancel")
                yield Button("Run anyway", variant="warning", id="run")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))
