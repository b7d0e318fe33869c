"""Environment: GPUs (NVML), torch and CUDA, the checkpoint, free disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static


class EnvironmentScreen(Screen):
    BINDINGS = [("r", "refresh", "Refresh"), ("ctrl+n", "next", "Next: audio")]

    def action_next(self) -> None:
        from onss_tui.tui.screens.wizard import AudioScreen

        self.app.push_screen(AudioScreen())

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("", id="gpu-summary")
            yield DataTable(id="gpus", cursor_type="none")
            yield Static("", id="torch")
            yield Static("", id="checkpoint")
            yield Static("", id="disk")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#gpus", DataTable)
        table.add_columns("#", "GPU", "memory", "load", "temp", "power")
        self.action_refresh()

    def action_refresh(self) -> None:
        app = self.app
        probe = app.probe()
        self.query_one("#gpu-summary", Static).update(probe.summary())
        table = self.query_one("#gpus", DataTable)
        table.clear()
        for g in probe.gpus:
            table.add_row(str(g.index), g.name, f"{g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.0f} GiB",
                          f"{g.utilization}%", f"{g.temperature}°C", f"{g.power:.0f} W")
        table.display = probe.available
        self.query_one("#torch", Static).update(app.torch_status())
        info = app.checkpoint_status()
        self.query_one("#checkpoint", Static).update(info)
        out = Path(app.workdir)
        free = shutil.disk_usage(out if out.exists() else Path.cwd()).free
        self.query_one("#disk", Static).update(f"free disk in {out}: {free / 1e9:,.1f} GB")
