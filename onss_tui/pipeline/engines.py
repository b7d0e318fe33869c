"""The generation engines behind one interface, chosen once from the plan.

    preview   a spectral morph of the corner notes (pipeline/preview.py): seconds, on CPUs, for
              checking a layout; no model, no embeddings
    nsynth    Magenta's WaveNet autoencoder (onss_tui.model), at the plan's precision and layer step

The stages call ``embed`` and the generate workers ``generate_shard``; neither asks which engine it has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from onss_tui.pipeline.rundir import RunDir

if TYPE_CHECKING:
    from onss_tui.pipeline.plan import RunPlan, Shard

__all__ = ["Engine", "PreviewEngine", "NSynthEngine", "engine_for"]

Progress = Callable[[int, int], None]
OnOom = Callable[[int], None]


class Engine(Protocol):
    name: str
    preview_note: str | None  # what a pack made by this engine must say about itself (None: NSynth's own)
    uses_embeddings: bool  # whether the embed stage encodes the notes and interpolate mixes them
    reports_samples: bool  # whether a shard reports progress per saved stride of samples

    def embed(self, notes: np.ndarray, out: Path, progress: Progress | None = None) -> None: ...

    def generate_shard(self, run: RunDir, shard: Shard, out: Path, progress: Progress | None = None,
                       on_oom: OnOom | None = None) -> None: ...

    def release(self) -> None: ...


class PreviewEngine:
    name = "preview"
    preview_note: str | None = "made by the preview engine, not NSynth"
    uses_embeddings = False
    reports_samples = False

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self._inputs: tuple | None = None

    def embed(self, notes: np.ndarray, out: Path, progress: Progress | None = None) -> None:
        raise RuntimeError("the preview engine needs no embeddings")

    def generate_shard(self, run: RunDir, shard: Shard, out: Path, progress: Progress | None = None,
                       on_oom: OnOom | None = None) -> None:
        from onss_tui.pipeline.stages.generate import generate_preview_shard
        from onss_tui.pipeline.stages.prepare import load_notes

        if self._inputs is None:
            index, notes = load_notes(run.stage_dir("prepare"))
            self._inputs = (index, notes, run.sounds())
        index, notes, sounds = self._inputs
        generate_preview_shard(sounds[shard.start : shard.stop], index, notes, out)

    def release(self) -> None:
        self._inputs = None


class NSynthEngine:
    name = "nsynth"
    preview_note: str | None = None
    uses_embeddings = True
    reports_samples = True

    def __init__(self, plan: RunPlan, device: str):
        self.plan = plan
        self.device = device
        self._model = None
        self._embeddings: np.ndarray | None = None

    def model(self):
        if self._model is None:
            from onss_tui.model import NSynth

            assert self.plan.checkpoint is not None
            model = NSynth.load(Path(self.plan.checkpoint), device=self.device, precision=self.plan.precision)
            self._model = model.with_precision(self.plan.precision, kernels=self.plan.kernels)
        return self._model

    def embed(self, notes: np.ndarray, out: Path, progress: Progress | None = None) -> None:
        """Encode notes [n, T] in batches of the plan's encode_batch; write float32 [n, T // 512, 16]."""
        from onss_tui.atomic import atomic_save_npy

        batch = self.plan.encode_batch
        parts = []
        for start in range(0, len(notes), batch):
            parts.append(self.model().encode(np.asarray(notes[start : start + batch])))
            if progress:
                progress(min(start + batch, len(notes)), len(notes))
        atomic_save_npy(out, np.concatenate(parts).astype(np.float32))

    def generate_shard(self, run: RunDir, shard: Shard, out: Path, progress: Progress | None = None,
                       on_oom: OnOom | None = None) -> None:
        from onss_tui.pipeline.stages.generate import generate_nsynth_shard

        if self._embeddings is None:
            self._embeddings = np.load(run.stage_dir("interpolate") / "embeddings.npy", mmap_mode="r")
        ids = np.arange(shard.start, shard.stop)
        generate_nsynth_shard(self.model(), np.asarray(self._embeddings[shard.start : shard.stop]), ids,
                              self.plan.seed, out, self.plan.save_every, progress, on_oom=on_oom)

    def release(self) -> None:
        self._model = None
        self._embeddings = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def engine_for(plan: RunPlan, device: str) -> Engine:
    """The plan's engine; ``device``: the torch device this process runs it on."""
    if plan.engine == "preview":
        return PreviewEngine(plan)
    return NSynthEngine(plan, device)
