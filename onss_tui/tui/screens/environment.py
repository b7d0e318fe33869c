"""Environment: GPUs (NVML), torch and CUDA, the checkpoint, Slurm, MP3, free disk (what `onss env` prints)."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static


class DownloadProgress(Message):
    def __init__(self, phase: str, done: int, total: int | None):
        super().__init__()
        self.phase, self.done, self.total = phase, done, total


class DownloadFinished(Message):
    def __init__(self, result: str, ok: bool):
        super().__init__()
        self.result, self.ok = result, ok


class EnvironmentScreen(Screen):
    BINDINGS = [("r", "refresh", "Refresh"), ("ctrl+n", "next", "Next: audio"),
                ("d", "download", "Download")]

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
            yield ProgressBar(id="download", show_eta=True)
            yield Static("", id="tools", markup=False)
            yield Static("", id="disk")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#gpus", DataTable)
        table.add_columns("#", "GPU", "memory", "load", "temp", "power")
        self.query_one("#download", ProgressBar).display = False
        self.downloading = False
        self.download_error: str | None = None  # shown until a download succeeds (not only for seconds)
        self.action_refresh()
        self.app.refresh_bindings()  # (the app's "e Environment" is not offered here)

    # -- the checkpoint download: a thread worker that only posts messages ---------------------
    def action_download(self) -> None:
        if self.downloading:
            self.notify("the download is already running")
            return
        from onss_tui.model.install import checkpoint_info

        info = checkpoint_info(verify=False)
        if info.installed and info.problem is None:
            self.notify(f"already installed: {info.prefix}")
            return
        self.downloading = True
        self.download_error = None
        bar = self.query_one("#download", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.query_one("#checkpoint", Static).update("checkpoint: downloading (resumable: press d again if it stops)")
        self.download()

    @work(thread=True, exclusive=True, group="download")
    def download(self) -> None:
        from onss_tui.model.install import download_and_install

        def progress(phase: str, done: int, total: int | None) -> None:
            self.post_message(DownloadProgress(phase, done, total))

        try:
            prefix = download_and_install(self.app.checkpoint_url, progress=progress)
        except Exception as exc:  # InstallError, OSError, ...: shown, never a traceback
            self.post_message(DownloadFinished(str(exc), ok=False))
        else:
            self.post_message(DownloadFinished(str(prefix), ok=True))

    def on_download_progress(self, message: DownloadProgress) -> None:
        bar = self.query_one("#download", ProgressBar)
        bar.update(total=message.total, progress=message.done)
        total = f" of {message.total / 1e6:,.0f} MB" if message.total else ""
        self.query_one("#checkpoint", Static).update(
            f"checkpoint: {message.phase} {message.done / 1e6:,.0f} MB{total}")

    def on_download_finished(self, message: DownloadFinished) -> None:
        self.downloading = False
        self.query_one("#download", ProgressBar).display = False
        if message.ok:
            self.notify(f"checkpoint installed and verified: {message.result}", timeout=10)
        else:
            self.download_error = message.result
            self.notify(f"download failed: {message.result}", severity="error", timeout=15)
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
        if "not installed" in info:
            info += "\n  (only the nsynth engine needs it: the preview engine runs without one)"
        if self.download_error:
            info += f"\n  the last download failed: {self.download_error}\n  press d to try again (it resumes)"
        self.query_one("#checkpoint", Static).update(info)
        self.query_one("#tools", Static).update(app.tools_status())
        self.query_one("#disk", Static).update(disk_text(app.draft, app.disk_free))


def disk_text(draft, disk_free) -> str:
    """Free space where runs go, against what the draft recipe's run will write."""
    from onss_tui.pipeline.grid import CORNER_NAMES, plan_sounds, stage_bytes

    runs = Path(draft.workdir) / "runs"
    folder = runs
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = disk_free(folder)
    line = f"free disk for ./runs: {free / 1e9:,.1f} GB"
    corners = [draft.corners[c] for c in CORNER_NAMES]
    if not all(corners) or not draft.pitches or draft.resolution < 2:
        return line + "  (what a run needs shows once the wizard has corners and pitches)"
    plan = plan_sounds(corners, draft.pitches, draft.resolution)
    need = sum(stage_bytes(len(plan.sounds), sum(map(len, corners)), len(draft.pitches), draft.resolution,
                           len(plan.pads)).values())
    verdict = "enough" if free > need * 1.1 else "NOT ENOUGH: free some space or choose another output folder"
    return f"{line}; the recipe '{draft.name}' needs about {need / 1e9:,.2f} GB: {verdict}"
