"""Stage generate: every shard of sounds becomes ``generate/shard-NNNNN.npy`` (int16 [n, sample_length]).

reads   ``plan.json`` (the shards, the executors, every generation setting), the engine's inputs
writes  ``generate/shard-NNNNN.npy`` and its ``.done`` marker; events on ``generate-w<N>``
The supervisor runs one worker in its own process where the plan has one CPU executor, and
otherwise starts one worker process per executor (``python -m onss_tui.pipeline.worker RUN N``,
its GPU in ``CUDA_VISIBLE_DEVICES``); a worker reads the plan and the run folder, nothing else.

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
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onss_tui.atomic import atomic_save_npy, atomic_write
from onss_tui.pipeline.context import RunError, StageContext
from onss_tui.pipeline.files import Sound
from onss_tui.pipeline.preview import morph
from onss_tui.pipeline.rundir import RunDir
from onss_tui.signals import Preempted, preemption_requested

if TYPE_CHECKING:
    from onss_tui.pipeline.engines import Engine
    from onss_tui.pipeline.plan import RunPlan

__all__ = ["run", "shard_path", "to_int16", "generate_preview_shard", "generate_nsynth_shard", "run_worker",
           "die_with_parent"]

Progress = Callable[[dict], None]


def shard_path(stage_dir: Path, shard_id: int) -> Path:
    return stage_dir / f"shard-{shard_id:05d}.npy"


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(audio, np.float64) * 32767), -32768, 32767).astype(np.int16)


def generate_preview_shard(sounds: list[Sound], note_index: dict, notes: np.ndarray, out: Path) -> None:
    audio = []
    for s in sounds:
        corners = [np.asarray(notes[note_index[(inst, s.pitch)]]) for inst, _ in s.mix]
        audio.append(morph(corners, [w for _, w in s.mix]))
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


def _inject_slowness() -> None:
    """Tests set ONSS_FAULT_SHARD_SECONDS=S to make each shard take S seconds more (a scheduler can
    then cancel, requeue or lose a task in the middle of one). A preemption request ends the wait."""
    seconds = float(os.environ.get("ONSS_FAULT_SHARD_SECONDS") or 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not preemption_requested():
        time.sleep(0.05)


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
        :meth:`~onss_tui.engine.fastgen.Generation.compact_state_later` waits for its copy there)."""
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(state,), name="onss-state-writer", daemon=True)
        self._thread.start()

    def _write(self, state: dict) -> None:
        import torch

        try:
            if callable(state):
                state = state()
            with atomic_write(self.path, "wb") as f:
                torch.save(state, f)  # type: ignore[arg-type]  # a binary file
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
    for path, rows in zip(halves, (slice(0, half), slice(half, None)), strict=True):
        if not path.is_file():
            with atomic_write(path, "wb") as f:  # clones: a saved view would carry the whole batch
                torch.save({"t": state["t"], "codes": state["codes"][rows].clone(),
                            "keys": state["keys"][rows].clone(), "total": state["total"]}, f)  # type: ignore[arg-type]


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
                        if preemption_requested():  # (Slurm: the job stops soon) the save is on disk, then stop
                            saver.wait()
                            raise Preempted(f"{out.name}: state saved at sample {gen.t}")
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


def run_worker(run: RunDir, plan: RunPlan, worker: int, engine: Engine,
               emit: Callable[..., object] | None = None) -> None:
    """Generate this worker's unfinished shards with ``engine``, emitting progress events on
    ``events/generate-w<worker>`` (through ``emit(stream, event, **fields)``, by default straight
    into the run directory)."""
    stream = f"generate-w{worker}"
    send: Callable[..., object] = emit or run.emit
    executor = plan.executor(worker)
    where: dict[str, object] = {"gpu": executor.gpu} if executor.gpu is not None else {}  # for the dashboard
    label = executor.label
    if executor.kind == "slurm":  # where Slurm put it: GPU numbers are per node, so the node names it too
        node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
        gpu = (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",")[0]
        label = f"{node} GPU {gpu}" if executor.device != "cpu" and gpu else f"{node} CPU (task {executor.task})"
        where = {"node": node, **({"gpu": int(gpu)} if gpu.isdigit() and executor.device != "cpu" else {})}
        job = os.environ.get("SLURM_JOB_ID")
        if job:
            where["job"] = job
    out_dir = run.stage_dir("generate")
    mine = plan.shards_of(worker)
    todo = [s for s in mine if not RunDir.is_done(shard_path(out_dir, s.id))]
    send(stream, "start", worker=worker, pid=os.getpid(), shards=len(mine), todo=len(todo), label=label,
         visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), device=executor.device, **where)
    for i, shard in enumerate(todo, start=len(mine) - len(todo) + 1):
        if preemption_requested():  # (Slurm: the job stops soon) finished shards are kept; stop here
            raise Preempted(f"worker {worker}: stopped before shard {shard.id}")
        out = shard_path(out_dir, shard.id)
        n = shard.size
        t0 = time.monotonic()
        _inject_slowness()
        if preemption_requested():
            raise Preempted(f"worker {worker}: stopped in shard {shard.id}")
        if not engine.reports_samples:
            engine.generate_shard(run, shard, out)
            # a whole shard at once (the preview engine): its rate is the shard's, so every engine's
            # viewers show samples/s and a time left
            length = plan.sample_length
            rate = n * length / max(time.monotonic() - t0, 1e-9)
            send(stream, "progress", batch=i, batches=len(mine), sample=length, samples=length, sounds=n,
                 samples_per_s=round(rate, 1), **where)
        else:
            last: list = [t0, None]  # (time, sample) of the previous report

            def progress(t: int, total: int, i=i, n=n, last=last) -> None:
                now = time.monotonic()
                # the batch advances in save_every strides from multiples of save_every, so after a
                # resume (or a halved batch starting over) the stride that just ended began here:
                stride = plan.save_every
                prev = last[1] if last[1] is not None and t > last[1] else ((t - 1) // stride) * stride
                rate = (t - prev) * n / max(now - last[0], 1e-9)
                last[:] = [now, t]
                send(stream, "progress", batch=i, batches=len(mine), sample=t, samples=total, sounds=n,
                     samples_per_s=round(rate, 1), **where)

            def on_oom(batch: int, shard_id: int = shard.id) -> None:
                send(stream, "out_of_memory", batch_size=batch, shard=shard_id)

            engine.generate_shard(run, shard, out, progress, on_oom=on_oom)
        RunDir.mark_done(out, sounds=n, seconds=round(time.monotonic() - t0, 3))
        send(stream, "shard_done", shard=shard.id, batch=i, batches=len(mine))


def die_with_parent(parent: int | None = None) -> None:
    """Linux: a worker gets SIGTERM when its supervisor dies, so no orphan keeps generating.
    ``parent``: the supervisor's pid, for a child that starts slowly (a spawned pool worker
    imports the package first): if the supervisor died before this ran, the child goes now."""
    import signal

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _worker_preexec() -> None:
    """In a generate worker between fork and exec: ctrl+c is the supervisor's to act on (an ignored
    SIGINT stays ignored through exec, so also while the worker imports), and it dies with it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM to every worker still running, then SIGKILL to any still there after ``grace`` s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _spawn_workers(ctx: StageContext) -> None:
    """One worker process per executor; their events are forwarded to the supervisor's listener."""
    run, plan = ctx.run, ctx.plan
    logs = run.path / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for executor in plan.executors:
        env = {**os.environ, **executor.environment}
        if executor.threads and "OMP_NUM_THREADS" not in os.environ:  # (a user's own setting stays)
            env["OMP_NUM_THREADS"] = str(executor.threads)
        with open(logs / f"worker-{executor.index}.log", "ab") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "onss_tui.pipeline.worker", str(run.path), str(executor.index)],
                stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_worker_preexec))
    reader = run.event_reader(streams=("generate-w",))
    reader.read()  # what earlier runs wrote is not news

    def forward() -> None:
        for e in reader.read():
            if ctx.listener:
                ctx.listener(e)

    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            forward()
    except BaseException:  # ctrl+c, SIGTERM: the workers stop first (what they finished stays done)
        _stop(procs)
        raise
    forward()
    failed = [w for w, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise RunError(f"{run.path}: generate worker {failed[0]} failed; see {logs / f'worker-{failed[0]}.log'}. "
                         "Run again to resume.")


def run(ctx: StageContext) -> dict:
    plan = ctx.plan
    ctx.release()  # nothing of the supervisor's stays on a GPU while the workers generate
    if len(plan.executors) == 1 and plan.executors[0].gpu is None:
        from onss_tui.pipeline.engines import engine_for

        engine = engine_for(plan, plan.executors[0].device)
        try:
            run_worker(ctx.run, plan, 0, engine, ctx.emit)
        finally:
            engine.release()
    else:
        _spawn_workers(ctx)
    out_dir = ctx.stage_dir("generate")
    missing = [s.id for s in plan.shards if not RunDir.is_done(shard_path(out_dir, s.id))]
    if missing:
        raise RunError(f"{ctx.run.path}: generate: {len(missing)} shards unfinished (first {missing[0]}); "
                         f"see {ctx.run.path / 'logs'} and run again to resume.")
    return {"shards": len(plan.shards)}
