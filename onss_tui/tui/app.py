"""The app factory shared by the CLI and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual.app import App

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
                 checkpoint_status: Callable[[], str] | None = None):
        super().__init__()
        self.probe = probe_fn
        self.workdir = workdir or Path.cwd()
        self.run_dir = run_dir
        self.torch_status = torch_status or _torch_status
        self.checkpoint_status = checkpoint_status or _checkpoint_status
        self.draft = Draft(workdir=self.workdir)
        self.saved_recipe: Path | None = None

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen(self.run_dir) if self.run_dir else EnvironmentScreen())

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
    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)" if torch.cuda.is_available() else "no CUDA"
    return f"torch {torch.__version__}: {cuda}"


def _checkpoint_status() -> str:
    from onss_tui.model.install import checkpoint_info

    info = checkpoint_info(verify=False)
    if not info.installed:
        return "checkpoint: not installed (onss model download)"
    return f"checkpoint: {info.prefix}" + (f" ({info.problem})" if info.problem else "")


def create_app(**kw) -> OnssApp:
    return OnssApp(**kw)
