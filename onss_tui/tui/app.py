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
from textual.screen import Screen

from onss_tui.gpu import GpuProbe, probe
from onss_tui.tui.screens.dashboard import DashboardScreen
from onss_tui.tui.screens.environment import EnvironmentScreen
from onss_tui.tui.screens.finish import FinishScreen
from onss_tui.tui.screens.wizard import Draft


class OnssApp(App):
    TITLE = "onss"
    SUB_TITLE = "Open NSynth Super studio"
    CSS_PATH = "onss.tcss"
    BINDINGS = [("q", "quit", "Quit"), ("e", "environment", "Environment"), ("ctrl+o", "recipes", "Recipes")]

    def __init__(self, probe_fn: Callable[[], GpuProbe] = probe, workdir: Path | None = None,
                 run_dir: Path | None = None, torch_status: Callable[[], str] | None = None,
                 checkpoint_status: Callable[[], str] | None = None,
                 bench_results: Callable[[], list[dict]] | None = None,
                 disk_free: Callable[[Path], int] | None = None, checkpoint_url: str | None = None):
        super().__init__()
        self.probe = probe_fn
        self.workdir = workdir or Path.cwd()
        self.run_dir = run_dir
        self.torch_status = torch_status or _torch_status
        self.checkpoint_status = checkpoint_status or _checkpoint_status
        self.bench_results = bench_results or _bench_results
        self.disk_free = disk_free or (lambda folder: shutil.disk_usage(folder).free)
        from onss_tui.model.install import CHECKPOINT_URL

        self.checkpoint_url = checkpoint_url or CHECKPOINT_URL
        self.draft = Draft(workdir=self.workdir)
        self.saved_recipe: Path | None = None

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


def create_app(**kw) -> OnssApp:
    return OnssApp(**kw)
