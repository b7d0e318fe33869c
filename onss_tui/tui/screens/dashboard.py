"""The run dashboard: stages, one card per generate worker, a log tail. A viewer of the run
directory: attaching and leaving never touch the run; stopping asks first."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Log

from onss_tui.pipeline.rundir import STAGES, RunDir
from onss_tui.tui.widgets.gpu_card import GpuCard

REFRESH_SECONDS = 1.0


class ConfirmStop(ModalScreen[bool]):
    BINDINGS = [("escape", "dismiss(False)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label("Stop this run? Finished work is kept; run the recipe again to resume.")
            with Horizontal():
                yield Button("Stop", variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class DashboardScreen(Screen):
    BINDINGS = [("s", "stop", "Stop run"), ("f", "finish", "Finish")]

    def action_finish(self) -> None:
        if self.run.state().status != "done":
            self.notify("the run has not finished yet")
            return
        self.app.show_finish(self.run.path)

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run = RunDir(run_dir)
        self.tail = self.run.event_reader()
        self.cards: dict[int, GpuCard] = {}
        self._probed: tuple[float, list] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="run-title", markup=False)
        with Horizontal(id="dash"):
            yield DataTable(id="stages", cursor_type="none")
            yield Grid(id="cards")
        yield Log(id="log", max_lines=200)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#stages", DataTable)
        table.add_column("stage", key="stage")
        table.add_column("status", key="status")
        for stage in STAGES:
            table.add_row(stage, "pending", key=stage)
        self.refresh_run()
        self.set_interval(REFRESH_SECONDS, self.refresh_run)
        self.set_interval(2.0, self.refresh_gpus)

    def refresh_run(self) -> None:
        state = self.run.state()
        pid = self.run.locked_by()
        status = f"running (pid {pid})" if pid else (state.status or "not started")
        if not pid and status == "running":
            status = "interrupted: run the recipe again to resume"
        self.query_one("#run-title", Label).update(f"{state.name or self.run.path.name}  "
                                                   f"[{state.engine or '?'}]  {status}  {self.run.path}")
        table = self.query_one("#stages", DataTable)
        for stage in STAGES:
            table.update_cell(stage, "status", state.stage(stage).status)
        log = self.query_one("#log", Log)
        for e in self.tail.read():
            stream = e.get("stream", "")
            if stream.startswith("generate-w") and e.get("event") == "progress":
                card = self._card(int(stream[len("generate-w"):]))
                if isinstance(e.get("gpu"), int) and card.gpu_index != e["gpu"]:
                    card.gpu_index = e["gpu"]  # the worker's GPU (recipe gpus: [2, 3] puts worker 0 on GPU 2)
                    card.show_gpu(self._gpu_of(card))
                card.show_event(e)
            elif e.get("event") != "progress":
                detail = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "stream", "event"))
                log.write_line(f"{stream}: {e.get('event')} {detail}".rstrip())

    def _card(self, worker: int) -> GpuCard:
        if worker not in self.cards:
            card = GpuCard(worker)
            self.cards[worker] = card
            self.query_one("#cards", Grid).mount(card)
            card.show_gpu(self._gpu_of(card))
        return self.cards[worker]

    def gpus(self) -> list:
        """NVML's GPUs, read at most once a second (a probe is a few ms per GPU)."""
        now = time.monotonic()
        if self._probed is None or now - self._probed[0] > 1.0:
            self._probed = (now, self.app.probe().gpus)
        return self._probed[1]

    def _gpu_of(self, card: GpuCard):
        index = card.gpu_index if card.gpu_index is not None else card.worker
        return next((g for g in self.gpus() if g.index == index), None)

    def refresh_gpus(self) -> None:
        for card in self.cards.values():
            card.show_gpu(self._gpu_of(card))

    def action_stop(self) -> None:
        pid = self.run.locked_by()
        if not pid or pid < 0:
            self.notify("No process is working on this run.")
            return

        def stop(confirmed: bool | None) -> None:
            if confirmed:
                os.kill(pid, signal.SIGTERM)
                self.notify(f"Stopped pid {pid}.")

        self.app.push_screen(ConfirmStop(), stop)
