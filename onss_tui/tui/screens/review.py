"""The wizard's last step: the recipe as it will be saved; save it, run it, or submit it to Slurm."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Header, Input, Label, Static, TextArea

from onss_tui.pipeline.dryrun import Verdict
from onss_tui.recipe import Recipe, RecipeError
from onss_tui.tui.recipe_edit import Check, Problem
from onss_tui.tui.screens.step import REVIEW, WizardStep, problem_lines


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


class RunChecked(Message):
    """The dry run's verdict on the saved recipe at ``path``, before it is started."""

    def __init__(self, path: Path, verdict: Verdict):
        super().__init__()
        self.path, self.verdict = path, verdict


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
        self.checking = False  # a saved recipe's dry run is on its way (ctrl+r waits for it)

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
        self.say(problem_lines(self.pending or check.problems))
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
        if self.checking:
            self.notify("still checking the recipe before it runs ...")
            return
        if self.ready():
            self.app.save_draft(then=self.check_and_run)

    def check_and_run(self, path: Path) -> None:
        """The dry run's checks on a thread (every note read, the GPUs probed); the run starts only
        if they pass, and a warning (NSynth on the CPU) is asked about first."""
        from onss_tui.pipeline.dryrun import verdict

        self.checking = True
        self.say(f"checking {path.name} before it runs (notes, checkpoint, GPUs, disk) ...", error=False)
        self.run_worker(lambda: self.post_message(RunChecked(path, verdict(path))), thread=True, group="check")

    def say(self, text: str, error: bool = True) -> None:
        """The line below the recipe: its problems, why a run was refused, a note (``error`` False)."""
        shown = self.query_one("#review-problems", Static)
        shown.update(text)
        shown.set_class(not error, "-note")
        shown.display = bool(text)

    def on_run_checked(self, message: RunChecked) -> None:
        from onss_tui.tui.screens.dialogs import ConfirmRun

        self.checking = False
        v = message.verdict
        if v.problem:
            self.app.clear_notifications()  # (a toast would cover the reason, which stays on the screen)
            self.say(f"error: not started: {v.problem}")
            self.app.bell()
            return
        self.say("")
        if v.warning:
            def answer(choice: str | None) -> None:
                if choice == "run":
                    self.app.start_run(message.path)

            self.app.push_screen(ConfirmRun(v.warning), answer)
            return
        self.app.start_run(message.path)

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
        self.say(result.text if result.ok else f"error: {result.text}")
        self.notify(result.text.splitlines()[0] if result.ok else result.text, timeout=15,
                    severity="information" if result.ok else "error")
        if result.ok and result.run_dir is not None:
            self.app.push_screen(DashboardScreen(result.run_dir))
