"""The app factory shared by the CLI and the tests."""

from __future__ import annotations

import os
import shutil
import sys
import termios
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen, Screen

from onss_tui.gpu import GpuProbe, probe
from onss_tui.tui.recipe_edit import Draft, recipe_data
from onss_tui.tui.screens.dashboard import DashboardScreen
from onss_tui.tui.screens.environment import EnvironmentScreen
from onss_tui.tui.screens.finish import FinishScreen
from onss_tui.tui.screens.wizard import DraftSaved, DraftSaveFailed, ResumeDraft, UnsavedChanges


class AutosaveFound(Message):
    """A previous session's unsaved draft (read on a thread at the start)."""

    def __init__(self, draft: Draft, when: float):
        super().__init__()
        self.draft, self.when = draft, when


class AutosaveFailed(Message):
    def __init__(self, error: str):
        super().__init__()
        self.error = error


class OnssApp(App):
    TITLE = "onss"
    SUB_TITLE = "Open NSynth Super studio"
    CSS_PATH = "onss.tcss"
    BINDINGS = [
        # one line in the keys panel for both quit keys (textual's own ctrl+q repeats "Quit" as its tooltip)
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip="(asks first if the recipe is unsaved)"),
        Binding("q", "quit", "Quit", tooltip="(asks first if the recipe is unsaved)"),
        ("e", "environment", "Environment"), ("ctrl+o", "recipes", "Recipes"),
        Binding("escape", "hide_keys", "Close the keys panel", show=False),
    ]

    def __init__(self, probe_fn: Callable[[], GpuProbe] = probe, workdir: Path | None = None,
                 run_dir: Path | None = None, torch_status: Callable[[], str] | None = None,
                 checkpoint_status: Callable[[], str] | None = None,
                 bench_results: Callable[[], list[dict]] | None = None,
                 disk_free: Callable[[Path], int] | None = None, checkpoint_url: str | None = None,
                 tools_status: Callable[[], str] | None = None):
        super().__init__()
        self.probe = probe_fn
        self.workdir = workdir or Path.cwd()
        self.run_dir = run_dir
        self.torch_status = torch_status or _torch_status
        self.checkpoint_status = checkpoint_status or _checkpoint_status
        self.tools_status = tools_status or _tools_status
        self.bench_results = bench_results or _bench_results
        self.disk_free = disk_free or (lambda folder: shutil.disk_usage(folder).free)
        from onss_tui.model.install import CHECKPOINT_URL

        self.checkpoint_url = checkpoint_url or CHECKPOINT_URL
        self._autosave_lock = threading.Lock()
        self._autosave_seq = 0  # the latest autosave asked for
        self._autosave_done = 0  # the latest written (an older one never overwrites it)
        self._autosave_warned = False
        self.draft = Draft(workdir=self.workdir)
        self.saved_recipe: Path | None = None

    @property
    def draft(self) -> Draft:
        """The recipe the wizard edits; every change of it is autosaved."""
        return self._draft

    @draft.setter
    def draft(self, draft: Draft) -> None:
        self._draft = draft
        draft.on_change = self.autosave

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every key of the current screen and of the app is also a command-palette entry (ctrl+p)."""
        titles = set()
        for command in super().get_system_commands(screen):
            titles.add(command.title)
            yield command
        for node in (screen, self):  # every binding, also those a focused widget shadows (enter on a table)
            for bindings in node._bindings.key_to_bindings.values():
                for binding in bindings:
                    action = binding.action
                    if not binding.description or binding.description in titles or \
                            node.check_action(action.split("(")[0], ()) is False:
                        continue
                    titles.add(binding.description)
                    yield SystemCommand(binding.description, f"key: {self.get_key_display(binding)}",
                                        partial(self.run_action, action, node))

    def on_mount(self) -> None:
        if not self.is_headless and not self.is_web and sys.__stdin__ is not None and sys.__stdin__.isatty():
            self.set_interval(1.0, self._check_terminal)
        self.push_screen(DashboardScreen(self.run_dir) if self.run_dir else EnvironmentScreen())
        if self.run_dir is None:
            self.run_worker(self._find_autosave, thread=True, group="autosave-read")

    def _check_terminal(self) -> None:
        """Leave when the terminal is gone (an SSH session dropped with SIGHUP ignored, as under
        nohup or tmux's detach-on-destroy). Without this, the input thread would read the dead
        terminal's end-of-file in a busy loop forever. Runs are detached: they go on."""
        try:
            termios.tcgetattr(sys.__stdin__.fileno())
        except (termios.error, OSError, ValueError, AttributeError):
            # exit() may itself block writing to the dead terminal: give it a moment, then go
            threading.Timer(3.0, os._exit, (129,)).start()
            self.exit(return_code=129)

    # -- unsaved work -------------------------------------------------------------------------------
    def autosave(self, clear: bool = False, then: Callable[[], object] | None = None) -> None:
        """Write the draft to the user state folder (on a thread) while it has unsaved changes, and
        remove it once it has none (or with ``clear``); ``then`` runs after, on the UI thread."""
        self._autosave_seq += 1
        payload = None if clear or not self.draft.dirty else self.draft.to_json()
        self.run_worker(partial(self._write_autosave, self._autosave_seq, payload, then), thread=True,
                        group="autosave")

    def _write_autosave(self, seq: int, payload: str | None, then: Callable[[], object] | None) -> None:
        from onss_tui.tui.recipe_edit import clear_autosave, write_autosave

        with self._autosave_lock:
            if seq > self._autosave_done:
                self._autosave_done = seq
                try:
                    if payload is None:
                        clear_autosave(self.workdir)
                    else:
                        write_autosave(self.workdir, payload)
                except OSError as exc:
                    self.post_message(AutosaveFailed(f"cannot autosave the recipe: {exc}"))
        if then is not None:
            self.call_from_thread(then)

    def on_autosave_failed(self, message: AutosaveFailed) -> None:
        if not self._autosave_warned:  # once: every keystroke would say it again
            self._autosave_warned = True
            self.notify(message.error, severity="warning", timeout=10)

    def _find_autosave(self) -> None:
        from onss_tui.tui.recipe_edit import read_autosave

        found = read_autosave(self.workdir)
        if found is not None:
            self.post_message(AutosaveFound(*found))

    def on_autosave_found(self, message: AutosaveFound) -> None:
        if self.draft.dirty:  # work started here meanwhile: the old draft stays on disk until it is replaced
            return

        def answer(choice: str | None) -> None:
            from onss_tui.tui.screens.wizard import AudioScreen

            if choice == "resume":
                self.draft = message.draft
                self.push_screen(AudioScreen())
            elif choice == "discard":
                self.autosave(clear=True)

        self.push_screen(ResumeDraft(message.draft, message.when), answer)

    def guard_unsaved(self, then: Callable[[], object], doing: str) -> None:
        """``then``, once unsaved changes of the draft are saved or discarded (asked; cancel: nothing)."""
        if not self.draft.dirty:
            then()
            return

        def answer(choice: str | None) -> None:
            if choice == "save":
                self.save_draft(then=lambda _path: then())
            elif choice == "discard":
                self.autosave(clear=True, then=then)

        self.push_screen(UnsavedChanges(self.draft.name or "my-pack", doing), answer)

    async def action_quit(self) -> None:
        """Quit; with unsaved changes, ask first (save, discard or cancel)."""
        if isinstance(self.screen, UnsavedChanges):
            return
        self.guard_unsaved(self.exit, "quit")

    def save_draft(self, then: Callable[[Path], object] | None = None) -> bool:
        """Save the draft to its recipe file (on a thread), then ``then(path)``; False (and the
        first problem shown) when it does not pass its check."""
        check = self.draft.check()
        if check.recipe is None:
            first = check.problems[0].short() if check.problems else "the recipe does not pass its check"
            self.notify(first, severity="error", timeout=10)
            return False
        path = self.draft.target()
        self.run_worker(partial(self._write_recipe, path, check.text, check.recipe, recipe_data(self.draft.recipe),
                                then), thread=True, group="save")
        return True

    def _write_recipe(self, path: Path, text: str, recipe, edited: dict, then) -> None:
        from onss_tui.atomic import atomic_write_text

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
        except OSError as exc:
            self.post_message(DraftSaveFailed(f"{path}: cannot save it ({exc.strerror or exc})"))
            return
        self.post_message(DraftSaved(path, text, recipe, edited, then))

    def on_draft_saved(self, message: DraftSaved) -> None:
        self.draft.after_save(message.path, message.text, message.recipe, message.edited)
        self.saved_recipe = message.path
        self.notify(f"saved {message.path}")
        then = message.then
        # the autosave is gone (or holds what changed meanwhile) before anything follows, quitting included
        self.autosave(then=(lambda: then(message.path)) if then is not None else None)

    def on_draft_save_failed(self, message: DraftSaveFailed) -> None:
        self.notify(message.error, severity="error", timeout=10)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "hide_keys":  # escape is the screens' own (back, cancel) unless the panel is open
            return self._keys_panel() is not None
        if action in ("environment", "recipes"):  # not offered where it is already shown (under a dialog too)
            from onss_tui.tui.screens.recipes import RecipesScreen

            shown = next((s for s in reversed(self.screen_stack) if not isinstance(s, ModalScreen)), None)
            if not getattr(shown, "APP_KEYS_IN_FOOTER", True):
                return False  # (the screen binds them itself, out of its footer)
            return not isinstance(shown, EnvironmentScreen if action == "environment" else RecipesScreen)
        return True

    def _keys_panel(self):
        from textual.css.query import NoMatches
        from textual.widgets import HelpPanel

        try:
            return self.screen.query_one(HelpPanel)
        except NoMatches:
            return None

    def action_hide_keys(self) -> None:
        panel = self._keys_panel()
        if panel is not None:
            panel.remove()

    def action_environment(self) -> None:
        self.push_screen(EnvironmentScreen())

    def action_recipes(self) -> None:
        from onss_tui.tui.screens.recipes import RecipesScreen

        self.push_screen(RecipesScreen())

    def start_run(self, recipe: Path) -> Path:
        """Start ``onss run`` detached (its own session: it outlives this app and the SSH session)
        and show its dashboard."""
        from onss_tui.pipeline.runner import start_detached

        run_dir, _pid = start_detached(recipe)
        self.push_screen(DashboardScreen(run_dir))
        return run_dir

    def show_finish(self, run_dir: Path) -> None:
        self.push_screen(FinishScreen(run_dir))


def _torch_status() -> str:
    try:
        import torch
    except ImportError:
        return "torch: not installed"
    cuda = (f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)" if torch.cuda.is_available()
            else "no CUDA")
    return f"torch {torch.__version__}: {cuda}"


def _bench_results() -> list[dict]:
    from onss_tui.pipeline.throughput import load_results

    return load_results()


def _checkpoint_status() -> str:
    from onss_tui.model.install import checkpoint_info

    info = checkpoint_info(verify=False)
    if not info.installed:
        return "checkpoint: not installed (press d, or run onss model download)"
    return f"checkpoint: {info.prefix}" + (f" ({info.problem})" if info.problem else "")


def _tools_status() -> str:
    """Slurm and MP3, as ``onss env`` says them."""
    from onss_tui.environment import audio_status, slurm_status

    return f"{slurm_status()}\n{audio_status()}"


def create_app(**kw) -> OnssApp:
    return OnssApp(**kw)
