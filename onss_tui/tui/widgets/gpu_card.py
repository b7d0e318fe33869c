"""One card per generate worker (one per GPU): batch i/N, sample progress, samples/s, ETA, NVML load."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar, Sparkline

from onss_tui.gpu import GpuInfo
from onss_tui.pipeline.progress import clock

__all__ = ["GpuCard", "rate_text", "eta_text", "clock"]


def rate_text(rate: float) -> str:
    """Samples/s in a few characters: 950/s, 12.3k/s, 3.07M/s."""
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M/s"
    if rate >= 1e4:
        return f"{rate / 1e3:.1f}k/s"
    return f"{rate:,.0f}/s"


def eta_text(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "ETA --"
    return f"ETA {clock(seconds)}"


class GpuCard(Vertical):
    """Shows the latest progress event of one worker stream and its GPU's NVML readings."""

    DEFAULT_CSS = ""

    def __init__(self, worker: int, **kw):
        super().__init__(id=f"gpu-card-{worker}", classes="gpu-card", **kw)
        self.worker = worker
        self.gpu_index: int | None = None  # from the worker's events; else worker w is GPU w
        self.where: str | None = None  # a Slurm task's node (and job): its GPU is not this machine's
        self.rates: list[float] = []
        self._ready = False
        self._pending: list[tuple[str, object]] = []

    def compose(self) -> ComposeResult:
        yield Label(f"worker {self.worker}", classes="card-title")
        yield Label("waiting", id="batch")
        yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="samples")
        yield Label("", id="rate")
        yield Sparkline([], id="history")
        yield Label("", id="gpu")

    def on_mount(self) -> None:
        self._ready = True
        for kind, value in self._pending:
            if kind == "place":
                self.place(*value)  # type: ignore[misc]
            else:
                (self.show_event if kind == "event" else self.show_gpu)(value)  # type: ignore[arg-type]
        self._pending.clear()

    def show_event(self, event: dict) -> None:
        if not self._ready:  # mounted, but not yet composed: apply it once it is
            self._pending.append(("event", event))
            return
        batch, batches = event.get("batch", 0), event.get("batches", 0)
        sample, samples = event.get("sample", 0), max(event.get("samples", 1), 1)
        # the bar: the worker's whole share (a shard's samples alone read 100% most of the time)
        shard = f"{100 * sample // samples}% of it" if sample < samples else "done"
        self.query_one("#batch", Label).update(f"shard {batch}/{batches}  {shard}")
        self.query_one("#samples", ProgressBar).update(total=max(batches, 1) * samples,
                                                       progress=max(batch - 1, 0) * samples + sample)
        rate = event.get("samples_per_s")
        if rate:
            self.rates = (self.rates + [float(rate)])[-60:]
            sounds = max(event.get("sounds", 1), 1)
            steps_left = (batches - batch) * samples + (samples - sample)
            eta = steps_left / (rate / sounds)
            self.query_one("#rate", Label).update(f"{rate_text(rate)}  {eta_text(eta)}")
            self.query_one("#history", Sparkline).data = list(self.rates)
        elif batch and batch == batches:
            self.query_one("#rate", Label).update("done")

    def place(self, title: str, where: str) -> None:
        """A Slurm task's card: titled by its node and GPU (e.g. ``n2 GPU 0``), placed on that node."""
        if not self._ready:
            self._pending.append(("place", (title, where)))
            return
        self.where = where
        self.query_one(".card-title", Label).update(title)
        self.query_one("#gpu", Label).update(where)

    def show_gpu(self, gpu: GpuInfo | None) -> None:
        if not self._ready:
            self._pending.append(("gpu", gpu))
            return
        label = self.query_one("#gpu", Label)
        if self.where is not None:
            label.update(self.where)
            return
        if gpu is None:
            label.update("CPU")
            return
        label.update(f"load {gpu.utilization}%  {gpu.memory_used / 2**30:.0f}/{gpu.memory_total / 2**30:.0f} GiB  "
                     f"{gpu.temperature}°C")
        self.query_one(".card-title", Label).update(f"GPU {gpu.index}  {gpu.name.removeprefix('NVIDIA ')}")
