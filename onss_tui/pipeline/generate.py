"""Stage generate: every shard of sounds becomes ``generate/shard-NNNNN.npy`` (int16 [n, sample_length]).

A shard is one batch. The nsynth engine saves the generator's state every ``save_every`` samples
(``shard-NNNNN.state.pt``, atomic, written on a thread while generation goes on). The save is
compact: the samples so far and the step (B x t bytes), not the ring buffers (6.3 MB a voice in
bf16, 26 GB for a batch of 4096); a resumed shard rebuilds the buffers exactly by replaying the
last 6,140 steps, and continues bit-identically. The shard's audio is written once, atomically,
then its ``.done`` marker. Nothing partial is ever
in place of a finished file (the original rewrote its WAVs every 1000 samples).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from onss_tui.atomic import atomic_save_npy, atomic_write
from onss_tui.pipeline.preview import morph
from onss_tui.pipeline.rundir import RunDir

__all__ = ["shard_path", "to_int16", "generate_preview_shard", "generate_nsynth_shard", "run_worker"]

Progress = Callable[[dict], None]


def shard_path(stage_dir: Path, shard_id: int) -> Path:
    return stage_dir / f"shard-{shard_id:05d}.npy"


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(audio, np.float64) * 32767), -32768, 32767).astype(np.int16)


def generate_preview_shard(sounds: list[dict], note_index: dict, notes: np.ndarray, out: Path) -> None:
    audio = []
    for s in sounds:
        mix = [(inst, w) for inst, w in s["mix"]]
        audio.append(morph([np.asarray(notes[note_index[(inst, s["pitch"])]]) for inst, _ in mix], [w for _, w in mix]))
    atomic_save_npy(out, to_int16(np.stack(audio)))


class OutOfMemory(RuntimeError):
    """Raised by the fault injection below; real runs see torch.cuda.OutOfMemoryError."""


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, OutOfMemory) or "out of memory" in str(exc).lower()


def _inject_oom(batch: int, t: int = 0) -> None:
    """Tests set ONSS_FAULT_OOM_ABOVE=N to make any batch larger than N run out of memory, from
    sample ONSS_FAULT_OOM_AFTER on (default 0: when it starts)."""
    limit = os.environ.get("ONSS_FAULT_OOM_ABOVE")
    after = int(os.environ.get("ONSS_FAULT_OOM_AFTER") or 0)
    if limit and batch > int(limit) and t >= after:
        raise OutOfMemory(f"out of memory (injected): batch {batch} > {limit} at sample {t}")


def generate_nsynth_shard(model, embeddings: np.ndarray, sound_ids: np.ndarray, seed: int, out: Path,
                          save_every: int, progress: Callable[[int, int], None] | None = None,
                          on_oom: Callable[[int], None] | None = None) -> None:
    """Generate one shard and write it atomically. Out of GPU memory, the batch is halved (and
    halved again) until it fits: each half starts from the samples the batch had saved for its
    voices (or from its own later save, after a kill), and a sound's audio does not depend on its
    batch, so the shard completes without losing work."""
    codes = _generate_batch(model, embeddings, sound_ids, seed, out, save_every, progress, on_oom)
    atomic_save_npy(out, to_int16(model.codes_to_audio(codes)))


class BackgroundSaver:
    """Writes generator states on a thread, atomically, so generation never waits for the disk.

    One write at a time: a new save first waits for the previous one (a disk slower than the
    GPU then paces the saves, never corrupts them). A failed write is raised at the next call."""

    def __init__(self, path: Path):
        self.path = path
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict | Callable[[], dict]) -> None:
        """Write ``state``, or what ``state()`` returns (called on the writer thread: a
        :meth:`~onss_tui.model.fastgen.Generation.compact_state_later` waits for its copy there)."""
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(state,), name="onss-state-writer", daemon=True)
        self._thread.start()

    def _write(self, state: dict) -> None:
        import torch

        try:
            if callable(state):
                state = state()
            with atomic_write(self.path, "wb") as f:
                torch.save(state, f)
        except BaseException as exc:  # handed to the generating thread
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _state_file(out: Path, ids: np.ndarray, whole: int) -> Path:
    if len(ids) == whole:
        return out.with_name(out.name.replace(".npy", ".state.pt"))
    return out.with_name(out.name.replace(".npy", f".state-{ids[0]}-{ids[-1]}.pt"))


def _hand_down(state_file: Path, halves: list[Path], half: int) -> None:
    """Split a batch's last compact save (samples so far, per voice) between its two halves, so
    they continue where the batch stopped. A half that has a save of its own keeps it (it is the
    later one: the batch was halved before, then the run was killed); an unreadable save is
    left alone (the halves start over)."""
    import torch

    try:
        state = torch.load(state_file, weights_only=True)
    except Exception:
        return
    if "decoder" in state or not {"t", "codes", "keys", "total"} <= set(state):
        return
    for path, rows in zip(halves, (slice(0, half), slice(half, None))):
        if not path.is_file():
            with atomic_write(path, "wb") as f:  # clones: a saved view would carry the whole batch
                torch.save({"t": state["t"], "codes": state["codes"][rows].clone(),
                            "keys": state["keys"][rows].clone(), "total": state["total"]}, f)


def _generate_batch(model, embeddings, ids, seed, out, save_every, progress, on_oom, whole=None) -> np.ndarray:
    import torch

    whole = whole or len(ids)
    state_file = _state_file(out, ids, whole)
    try:
        _inject_oom(len(ids))
        gen = model.generation(embeddings, seed=seed, sound_ids=ids)
        if state_file.is_file():
            try:
                gen.load_state_dict(torch.load(state_file, weights_only=True))
            except Exception:  # an unreadable or foreign state is discarded, never trusted
                state_file.unlink(missing_ok=True)
                gen = model.generation(embeddings, seed=seed, sound_ids=ids)
        saver = BackgroundSaver(state_file)
        try:
            with model.precision_scope():
                while not gen.done:
                    _inject_oom(len(ids), gen.t)
                    gen.advance(min(save_every, gen.total - gen.t))
                    if progress:
                        progress(gen.t, gen.total)
                    if not gen.done:
                        saver.save(gen.compact_state_later())  # copied and written while the next samples are made
        finally:
            saver.wait()
        gen.check()  # samples from a stalled persistent launch are never kept
        codes = gen.codes.cpu().numpy()
    except RuntimeError as exc:
        if not _is_oom(exc) or len(ids) == 1:
            raise
        del exc
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(ids) // 2
        if on_oom:
            on_oom(half)
        _hand_down(state_file, [_state_file(out, ids[:half], whole), _state_file(out, ids[half:], whole)], half)
        first = _generate_batch(model, embeddings[:half], ids[:half], seed, out, save_every, progress, on_oom, whole)
        second = _generate_batch(model, embeddings[half:], ids[half:], seed, out, save_every, progress, on_oom, whole)
        codes = np.concatenate([first, second])
    state_file.unlink(missing_ok=True)
    return codes


def run_worker(run: RunDir, worker: int, shards: list[dict], engine: str, load_inputs: Callable[[], dict],
               seed: int, save_every: int, emit: Callable[..., None] | None = None) -> None:
    """Generate this worker's unfinished shards, emitting progress events on ``events/generate-w<worker>``
    (through ``emit(stream, event, **fields)``, by default straight into the run directory)."""
    stream = f"generate-w{worker}"
    emit = emit or run.emit
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0]
    where = {"gpu": int(visible)} if engine == "nsynth" and visible.isdigit() else {}  # for the dashboard
    out_dir = run.stage_dir("generate")
    mine = [s for s in shards if s["worker"] == worker]
    todo = [s for s in mine if not RunDir.is_done(shard_path(out_dir, s["id"]))]
    emit(stream, "start", worker=worker, pid=os.getpid(), shards=len(mine), todo=len(todo))
    if not todo:
        return
    inputs = load_inputs()
    for i, shard in enumerate(todo, start=len(mine) - len(todo) + 1):
        out = shard_path(out_dir, shard["id"])
        n = shard["stop"] - shard["start"]
        t0 = time.monotonic()
        if engine == "preview":
            sounds = inputs["sounds"][shard["start"] : shard["stop"]]
            generate_preview_shard(sounds, inputs["note_index"], inputs["notes"], out)
            emit(stream, "progress", batch=i, batches=len(mine), sample=1, samples=1, sounds=n, samples_per_s=None)
        else:
            last: list = [t0, None]  # (time, sample) of the previous report

            def progress(t: int, total: int, i=i, n=n) -> None:
                now = time.monotonic()
                # the batch advances in save_every strides from multiples of save_every, so after a
                # resume (or a halved batch starting over) the stride that just ended began here:
                prev = last[1] if last[1] is not None and t > last[1] else ((t - 1) // save_every) * save_every
                rate = (t - prev) * n / max(now - last[0], 1e-9)
                last[:] = [now, t]
                emit(stream, "progress", batch=i, batches=len(mine), sample=t, samples=total, sounds=n,
                     samples_per_s=round(rate, 1), **where)

            ids = np.arange(shard["start"], shard["stop"])
            generate_nsynth_shard(inputs["model"], np.asarray(inputs["embeddings"][shard["start"] : shard["stop"]]),
                                  ids, seed, out, save_every, progress,
                                  on_oom=lambda b: emit(stream, "out_of_memory", batch_size=b, shard=shard["id"]))
        RunDir.mark_done(out, sounds=n, seconds=round(time.monotonic() - t0, 3))
        emit(stream, "shard_done", shard=shard["id"], batch=i, batches=len(mine))
