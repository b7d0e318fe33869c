"""The run dashboard: stages, one card per generate worker, a log tail. A viewer of the run
directory: attaching and leaving never touch the run; stopping asks first. A Slurm run also shows
its jobs as squeue has them (read on a thread, every few seconds), and its cards are labelled by
node and GPU (GPU numbers are per node), never mixed up with this machine's GPUs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Log, ProgressBar

from onss_tui.pipeline.files import RunState
from onss_tui.pipeline.rundir import STAGES, RunDir
from onss_tui.tui.widgets.gpu_card import GpuCard, clock, eta_text

REFRESH_SECONDS = 1.0
SLURM_SECONDS = 5.0  # squeue, at most this often


@dataclass
class RunSnapshot:
    """One reading of the run folder, made on a thread and shown on the UI thread."""

    state: RunState
    pid: int | None
    events: list[dict]
    shards: int | None  # the plan's, once planned
    done: int  # shards certified done so far


class ConfirmStop(ModalScreen[bool]):
    BINDINGS = [("escape", "dismiss(False)", "Cancel")]
    DEFAULT_CSS = """
    ConfirmStop #confirm { max-width: 90%; }
    ConfirmStop #confirm Label { width: 100%; height: auto; }
    ConfirmStop #confirm Horizontal { height: auto; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label("Stop this run? Finished work is kept; r on the dashboard resumes it.")
            with Horizontal():
                yield Button("Stop", variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class DashboardScreen(Screen):
    DEFAULT_CSS = """
    DashboardScreen #whole-run { height: 1; padding: 0 1; }
    DashboardScreen #run-progress { width: 26; }
    DashboardScreen #run-progress-text { width: 1fr; }
    """
    BINDINGS = [("s", "stop", "Stop"), ("r", "resume", "Resume"), ("f", "finish", "Finish"),
                ("escape", "back", "Back"), ("ctrl+b", "back", "Back"),
                # the app's keys, kept out of a footer that is full at 80 columns (the keys panel lists them)
                Binding("e", "environment", "Environment", show=False),
                Binding("ctrl+o", "recipes", "Recipes", show=False)]
    APP_KEYS_IN_FOOTER = False

    def action_environment(self) -> None:
        self.app.action_environment()  # type: ignore[attr-defined]

    def action_recipes(self) -> None:
        self.app.action_recipes()  # type: ignore[attr-defined]

    def action_back(self) -> None:
        """Leave the dashboard (the run goes on): to the screen it came from, else the recipes."""
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.action_recipes()  # type: ignore[attr-defined]

    def action_resume(self) -> None:
        """Start the run again where it stopped: detached on this machine, or submitted to Slurm."""
        snap = self.snapshot
        if snap is None or snap.pid or snap.state.status == "done":
            self.notify("The run is " + ("done." if snap and snap.state.status == "done" else "running."))
            return
        if self.on_slurm and self.slurm and self.slurm.get("jobs"):
            self.notify("The run's Slurm jobs are still queued.")
            return
        self.run_worker(self._resume, thread=True, exclusive=True, group="resume")

    def _resume(self) -> None:
        import subprocess
        import sys

        recipe = self.run.recipe_path
        argv = [sys.executable, "-m", "onss_tui", "run", str(recipe)] + (["--slurm"] if self.on_slurm else ["--detach"])
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        lines = (done.stdout + done.stderr).strip().splitlines()
        message = lines[0] if lines else "resumed"
        self.app.call_from_thread(self.notify, message, severity="information" if done.returncode == 0 else "error")
        self.app.call_from_thread(self.refresh_run)

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
        self.on_slurm = (self.run.path / "slurm.json").is_file()
        self.snapshot: RunSnapshot | None = None
        self._shards: int | None = None
        self._first_done: tuple[int, float] | None = None
        self.slurm: dict | None = None  # the latest slurm_side(), once read

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="run-title", markup=False)
        with Horizontal(id="whole-run"):
            yield ProgressBar(total=1, show_eta=False, id="run-progress")
            yield Label("", id="run-progress-text", markup=False)
        with Horizontal(id="dash"):
            yield DataTable(id="stages", cursor_type="none")
            yield Grid(id="cards")
        yield Label("", id="slurm-jobs", markup=False)
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
        self.query_one("#slurm-jobs", Label).display = self.on_slurm
        if self.on_slurm:
            self.poll_slurm()
            self.set_interval(SLURM_SECONDS, self.poll_slurm)

    def poll_slurm(self) -> None:
        self.run_worker(self._read_slurm, thread=True, exclusive=True, group="slurm")

    def _read_slurm(self) -> None:
        from onss_tui.cluster.submit import slurm_side

        info = slurm_side(self.run.path)  # (squeue: a subprocess, off the UI thread)
        self.app.call_from_thread(self.show_slurm, info)

    def show_slurm(self, info: dict | None) -> None:
        from onss_tui.cluster.submit import job_lines

        self.slurm = info
        if info is not None:
            self.query_one("#slurm-jobs", Label).update("\n".join(job_lines(info)))

    def refresh_run(self) -> None:
        """Read the run folder on a thread; the screen is updated from what it posts."""
        self.run_worker(self._read_run, thread=True, exclusive=True, group="refresh")

    def _read_run(self) -> None:
        self.app.call_from_thread(self.show_run, self.read_run())

    def read_run(self) -> RunSnapshot:
        """Everything the screen shows of the run folder (file I/O: called off the UI thread)."""
        if self._shards is None and self.run.has_plan():
            try:
                self._shards = len(self.run.plan().shards)
            except (OSError, ValueError):
                pass
        generate = self.run.path / "generate"
        done = sum(1 for _ in generate.glob("shard-*.npy.done")) if generate.is_dir() else 0
        return RunSnapshot(self.run.state(), self.run.locked_by(), self.tail.read(), self._shards, done)

    def show_run(self, snap: RunSnapshot) -> None:
        state, pid = snap.state, snap.pid
        self.snapshot = snap
        status = f"running (pid {pid})" if pid else (state.status or "not started")
        queued = len(self.slurm["jobs"]) if self.slurm and "jobs" in self.slurm else 0
        if self.on_slurm and status == "running":
            status = (f"running on Slurm ({queued} queued)" if queued or self.slurm is None else
                      "interrupted: no job queued; r resumes it on Slurm")
        elif not pid and status == "running":
            status = "interrupted: r resumes it"
        self.query_one("#run-title", Label).update(f"{state.name or self.run.path.name}  "
                                                   f"[{state.engine or '?'}]  {status}  {self.run.path}")
        self._show_whole_run(snap)
        table = self.query_one("#stages", DataTable)
        active = bool(pid) or (self.on_slurm and bool(queued))
        for stage in STAGES:
            shown = state.stage(stage).status
            if shown == "running" and not active:  # no process works on it (as the title says)
                shown = "stopped"  # ("interrupted" would not fit the column at 80 columns)
            table.update_cell(stage, "status", shown)
        log = self.query_one("#log", Log)
        for e in snap.events:
            stream = e.get("stream", "")
            if stream.startswith("generate-w") and e.get("event") == "start" and e.get("node"):
                # a Slurm task: its node and GPU name it; this machine's GPUs are not its own
                self._card(int(stream[len("generate-w"):])).place(e.get("label") or e["node"],
                                                                   f"on {e['node']}" + (f", job {e['job']}"
                                                                                        if e.get("job") else ""))
                log.write_line(f"{stream}: start on {e.get('label')}")
            elif stream.startswith("generate-w") and e.get("event") == "progress":
                card = self._card(int(stream[len("generate-w"):]))
                if isinstance(e.get("gpu"), int) and card.gpu_index != e["gpu"] and card.where is None:
                    card.gpu_index = e["gpu"]  # the worker's GPU (recipe gpus: [2, 3] puts worker 0 on GPU 2)
                    card.show_gpu(self._gpu_of(card))
                card.show_event(e)
            elif e.get("event") != "progress":
                detail = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "stream", "event"))
                log.write_line(f"{stream}: {e.get('event')} {detail}".rstrip())

    def _show_whole_run(self, snap: RunSnapshot) -> None:
        """The whole run's generation: shards done of all, elapsed time and the time left."""
        bar = self.query_one("#run-progress", ProgressBar)
        label = self.query_one("#run-progress-text", Label)
        if not snap.shards:
            label.update("generate: not planned yet")
            bar.update(total=1, progress=0)
            return
        gen = snap.state.stage("generate")
        bar.update(total=snap.shards, progress=snap.done)
        text = f"generate: {snap.done}/{snap.shards} shards  {100 * snap.done // snap.shards}%"
        if gen.status == "running" and gen.at:
            elapsed = max(time.time() - gen.at, 0.0)
            text += f"  elapsed {clock(elapsed)}"
            if self._first_done is None:
                self._first_done = (snap.done, time.time())
            first, since = self._first_done
            if snap.done > first:  # the shards finished while watching: their pace
                left = (time.time() - since) / (snap.done - first) * (snap.shards - snap.done)
                text += f"  {eta_text(left)}"
        elif gen.status == "done" and gen.seconds:
            text += f"  took {clock(gen.seconds)}"
        label.update(text)

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
        if card.where is not None or self.on_slurm:
            return None  # (on another node)
        index = card.gpu_index if card.gpu_index is not None else card.worker
        return next((g for g in self.gpus() if g.index == index), None)

    def refresh_gpus(self) -> None:
        for card in self.cards.values():
            card.show_gpu(self._gpu_of(card))

    def action_stop(self) -> None:
        if self.on_slurm and not self.run.locked_by():
            def cancel(confirmed: bool | None) -> None:
                if confirmed:
                    self.run_worker(self._cancel_jobs, thread=True, exclusive=True, group="slurm-stop")

            self.app.push_screen(ConfirmStop(), cancel)
            return
        pid = self.run.locked_by()
        if not pid or pid < 0:
            self.notify("No process is working on this run.")
            return

        def stop(confirmed: bool | None) -> None:
            if confirmed:
                from onss_tui.pipeline.runner import stop_run

                stop_run(self.run.path)  # as onss stop: marked stopped (not interrupted), then SIGTERM
                self.notify(f"Stopped pid {pid}.")

        self.app.push_screen(ConfirmStop(), stop)

    def _cancel_jobs(self) -> None:
        from onss_tui.cluster.scheduler import SlurmError
        from onss_tui.cluster.submit import stop

        try:
            alive = stop(self.run.path)
            message = f"Cancelled jobs {', '.join(alive)}." if alive else "No job of this run is queued."
        except SlurmError as exc:
            message = str(exc)
        self.app.call_from_thread(self.notify, message)
        self.app.call_from_thread(self.poll_slurm)
