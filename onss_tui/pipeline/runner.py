"""The supervisor: runs a recipe's stages in its run directory, skipping finished work.

Every stage's outputs are written atomically and marked done after, so the runner can be killed
at any moment and started again: finished work is never redone, partial work is never taken for
finished, and the pads come out byte-identical.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onss_tui.atomic import atomic_write_text
from onss_tui.pipeline import clean as clean_stage
from onss_tui.pipeline import pack as pack_stage
from onss_tui.pipeline.generate import run_worker, shard_path
from onss_tui.pipeline.interpolate import embed, interpolate, load_pad_rows, load_shards, load_sounds, make_shards
from onss_tui.pipeline.grid import stage_bytes
from onss_tui.pipeline.prepare import load_notes, prepare
from onss_tui.pipeline.rundir import STAGES, RunDir
from onss_tui.recipe import Recipe, load_recipe, parse_recipe, recipe_yaml

__all__ = ["RunError", "Runner", "resolved_recipe", "run_dir_of", "start_detached"]

Listener = Callable[[dict[str, Any]], None]


class RunError(Exception):
    """A stage cannot go on; the message names the stage, the file and the fix."""


def resolved_recipe(recipe: Recipe, base: Path) -> Recipe:
    """The recipe with every path made absolute, as stored in the run directory."""
    data = recipe.model_dump()
    data["inputs"] = str(recipe.inputs_dir(base).resolve())
    data["output"] = str(recipe.output_dir(base).resolve())
    if recipe.checkpoint:
        data["checkpoint"] = str(recipe.resolve(base, recipe.checkpoint).resolve())
    return Recipe.model_validate(data)


def run_dir_of(recipe_path: Path) -> Path:
    """The run folder a recipe file's 'output' names (absolute)."""
    recipe_path = Path(recipe_path)
    return Path(resolved_recipe(load_recipe(recipe_path), recipe_path.resolve().parent).output)


def start_detached(recipe_path: Path, device: str | None = None) -> tuple[Path, int]:
    """Start ``onss run RECIPE --json`` in its own session (it outlives the terminal and the SSH
    session that started it), logging to ``<run>/logs/supervisor.log``; return (run folder, pid)."""
    recipe_path = Path(recipe_path).resolve()
    run_dir = run_dir_of(recipe_path)
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "onss_tui", "run", str(recipe_path), "--json"] + (["--device", device] if device else [])
    with open(logs / "supervisor.log", "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen(argv, stdin=null, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return run_dir, proc.pid


def _parallel(fn, jobs: list[tuple], workers: int) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            fn(*job)
        return
    # spawned, not forked: a forked child would inherit the run lock and keep holding it if the
    # supervisor were killed, blocking the resumed run; and they die with it (an idle pool worker
    # of a killed supervisor would otherwise wait for work for ever: it holds its queue's pipe)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        for f in [pool.submit(fn, *job) for job in jobs]:
            f.result()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e8 else f"{n / 1e6:,.0f} MB"


def _die_with_parent(parent: int | None = None) -> None:
    """Linux: a worker gets SIGTERM when its supervisor dies, so no orphan keeps generating.
    ``parent``: the supervisor's pid, for a child that starts slowly (a spawned pool worker
    imports the package first): if the supervisor died before this ran, the child goes now."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _clean_job(src: str, dst: str, mode: str, dbfs: float) -> None:
    clean_stage.clean_shard(src, dst, mode, dbfs)
    RunDir.mark_done(Path(dst))


def _rows_job(src: str, dst: str) -> None:
    pack_stage.rows_shard(Path(src), Path(dst))
    RunDir.mark_done(Path(dst))


class Runner:
    def __init__(self, recipe: Recipe, base: Path, listener: Listener | None = None, device: str | None = None,
                 cpu_workers: int | None = None):
        self.recipe = resolved_recipe(recipe, base)
        self.run = RunDir(self.recipe.output)
        self.listener = listener
        self.device = device
        self.cpu_workers = cpu_workers or max(1, (os.cpu_count() or 1))
        self._model = None

    @classmethod
    def from_file(cls, path: Path, **kw: Any) -> "Runner":
        return cls(load_recipe(path), path.resolve().parent, **kw)

    @classmethod
    def from_run_dir(cls, run_dir: Path, **kw: Any) -> "Runner":
        r = parse_recipe((run_dir / "recipe.yaml").read_text(), str(run_dir / "recipe.yaml"))
        return cls(r, run_dir, **kw)

    # -- events ------------------------------------------------------------------------------
    def emit(self, stream: str, event: str, **fields: Any) -> None:
        record = self.run.emit(stream, event, **fields)
        if self.listener:
            self.listener(record)

    # -- the run -----------------------------------------------------------------------------
    def _check_paths(self) -> None:
        out, inputs = Path(self.recipe.output), Path(self.recipe.inputs)
        if out == inputs or inputs in out.parents:
            raise RunError(f"{out}: the output folder is inside the inputs folder {inputs}; the run would mix its "
                           "files with your notes. Set 'output' to a folder outside 'inputs'.")
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: exists and is not a folder. Set 'output' to a folder.")
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".onss-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunError(f"{out}: cannot write the run folder ({exc.strerror}). Set 'output' to a writable folder.") from None

    def execute(self) -> Path:
        self._check_paths()
        with self.run.lock():
            self._sweep_temp_files()
            self._check_recipe()
            self._check_kernels()
            self.run.update_state(pid=os.getpid(), status="running", name=self.recipe.name, engine=self.recipe.engine)
            self.emit("supervisor", "run_start", pid=os.getpid(), run=str(self.run.path))
            for stage in STAGES:
                if self.run.stage_status(stage) == "done":
                    self.emit("supervisor", "stage_skip", stage=stage)
                    continue
                self.run.set_stage(stage, "running")
                self.emit("supervisor", "stage_start", stage=stage)
                t0 = time.monotonic()
                try:
                    try:
                        info = getattr(self, f"stage_{stage}")() or {}
                    except OSError as exc:
                        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                            raise
                        raise self._out_of_space(stage, exc) from None
                except Exception as exc:
                    self.run.set_stage(stage, "failed", error=str(exc))
                    self.run.update_state(status="failed")
                    self.emit("supervisor", "stage_failed", stage=stage, error=str(exc))
                    raise
                self.run.set_stage(stage, "done", seconds=round(time.monotonic() - t0, 3), **info)
                self.emit("supervisor", "stage_done", stage=stage, seconds=round(time.monotonic() - t0, 3), **info)
            self.run.update_state(status="done")
            self.emit("supervisor", "run_done", pads=str(self.run.pads_dir), settings=str(self.run.settings_path))
        return self.run.path

    def _out_of_space(self, stage: str, exc: OSError) -> RunError:
        folder = self.run.pads_dir if stage == "pack" else self.run.path / stage
        need = self._space_estimate(stage)
        free = shutil.disk_usage(self.run.path).free
        why = "the file size limit (ulimit -f) was reached" if exc.errno == errno.EFBIG else "the disk is full"
        return RunError(f"{folder}: out of space during {stage}: {why}. This stage writes about "
                        f"{_mb(need)} there ({_mb(free)} free now). Free some space and run "
                        "again: finished work is kept and nothing partial was left behind.")

    def _space_estimate(self, stage: str) -> int:
        """Bytes a stage writes in all (an estimate for messages; the stage itself checks nothing)."""
        g = self.recipe.generation
        try:
            n = len(load_sounds(self.run.stage_dir("interpolate")))
        except (OSError, ValueError):
            n = 0
        pads = 1
        for c in self.recipe.corners.lists():
            pads *= len(c)
        sizes = stage_bytes(n, sum(len(c) for c in self.recipe.corners.lists()), len(self.recipe.pitches),
                            self.recipe.resolution, pads, g.sample_length)
        return sizes.get(stage, 1 << 20)

    def _sweep_temp_files(self) -> None:
        """Temp files of a killed run (hidden ``.<name>.*.tmp``/``.part``): never finished, so removed."""
        for f in self.run.path.rglob(".*"):
            if f.is_file() and f.name.endswith((".tmp", ".part")):
                f.unlink(missing_ok=True)

    def _check_recipe(self) -> None:
        text = recipe_yaml(self.recipe)
        stored = self.run.recipe_path
        if stored.is_file():
            try:
                old = parse_recipe(stored.read_text(), str(stored))
            except Exception:
                old = None
            if old is not None and old != self.recipe:
                raise RunError(f"{self.run.path}: this run folder was made by a different recipe "
                               f"({stored}). Set another 'output' in the recipe, or delete the folder to start over.")
        atomic_write_text(stored, text)

    # -- model -------------------------------------------------------------------------------
    def _device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _precision(self) -> str | None:
        """The recipe's precision; for ``auto``: fp32 on the CPU, and on a GPU the choice made
        (and stored in state.json) when the model was first loaded, or None before that."""
        p = self.recipe.generation.precision
        if p != "auto":
            return p
        if not self._measures_precision():
            return "fp32"
        return self.run.read_state().get("precision")

    FIDELITY_SAMPLES = 2048  # per clip, two clips: seconds on a GPU

    def _fidelity_clips(self) -> np.ndarray:
        """The run's first two prepared notes, on which precisions and kernels are measured."""
        _, notes = load_notes(self.run.stage_dir("prepare"))
        return np.asarray(notes[:2], dtype=np.float32)

    def _measures_precision(self) -> bool:
        """Whether ``auto`` is measured here: on a GPU (a CPU generates tiny sets, in fp32)."""
        return self._device().startswith("cuda")

    def model(self):
        if self._model is None:
            from onss_tui.model import NSynth
            from onss_tui.model.install import default_checkpoint

            ckpt = Path(self.recipe.checkpoint) if self.recipe.checkpoint else default_checkpoint()
            precision = self._precision()
            if precision is None:  # auto on a GPU: measured once per run, so a resumed run keeps it
                model = self._choose_precision(NSynth.load(ckpt, device=self._device(), precision="fp32"))
            else:
                model = NSynth.load(ckpt, device=self._device(), precision=precision)
            self._model = model.with_precision(model.precision, kernels=self._kernels() or "torch")
        return self._model

    # -- kernels -----------------------------------------------------------------------------
    KERNEL_STEPS = 128  # timed generation steps per candidate (after as many untimed ones)
    KERNEL_BATCH = 1024  # at most: the supervisor times on one GPU while the workers wait

    def _kernels(self) -> str | None:
        """The recipe's layer step; for ``auto``: PyTorch where the fused kernels cannot run (a CPU,
        no Triton), and on a GPU the choice timed when generation started (state.json), or None
        before that."""
        k = self.recipe.generation.kernels
        if k != "auto":
            return k
        if not self._measures_kernels():
            return "torch"
        return self.run.read_state().get("kernels")

    def _measures_kernels(self) -> bool:
        """Whether ``kernels: auto`` is timed here: the nsynth engine on a GPU with Triton."""
        if self.recipe.engine != "nsynth" or not self._device().startswith("cuda"):
            return False
        import torch

        from onss_tui.model import kernels

        return kernels.available(torch.device(self._device()))

    def _check_kernels(self) -> None:
        """``kernels: triton`` where they cannot run is refused before any work, with the fix."""
        if self.recipe.engine != "nsynth" or self.recipe.generation.kernels != "triton":
            return
        import torch

        from onss_tui.model import kernels

        why = kernels.why_unavailable(torch.device(self._device()))
        if why:
            raise RunError(f"{self.run.recipe_path}: generation.kernels is 'triton', but {why}. "
                           "Set generation.kernels to auto (or torch) in the recipe.")

    def _choose_kernels(self) -> None:
        """``kernels: auto`` on a GPU: time both layer steps once per run at the run's batch (at most
        KERNEL_BATCH voices) and keep the faster, the fused kernels only within the fidelity bar;
        stored in state.json so the workers and a resumed run use it."""
        if self._kernels() is not None:
            return
        from onss_tui.bench import choose_kernels

        model = self.model()
        batch = min(self._batch_size(), self.KERNEL_BATCH)
        checked = {}

        def acceptable(k: str) -> bool:
            checked[k] = self._kernel_fidelity(k)
            return checked[k]["meets_bar"]

        choice, rates = choose_kernels(model, batch, steps=self.KERNEL_STEPS, warm=self.KERNEL_STEPS,
                                       acceptable=acceptable)
        self.run.update_state(kernels=choice)
        self.emit("supervisor", "kernels", chosen=choice, batch=batch, samples_per_s=rates, fidelity=checked)
        self._model = model.with_precision(model.precision, kernels=choice)

    def _kernel_fidelity(self, kernels: str) -> dict:
        """The run's model with other kernels against fp32 PyTorch, teacher-forced on the first
        prepared notes (the precision measurement's clips and length)."""
        from onss_tui.model.fidelity import fidelity

        clips = self._fidelity_clips()
        model = self.model()
        reference = model.with_precision("fp32", kernels="torch")
        enc = reference.encode(clips)
        return fidelity(reference, model.with_precision(model.precision, kernels=kernels),
                        clips[:, : self.FIDELITY_SAMPLES], enc).as_dict()

    def _choose_precision(self, reference):
        """The fastest precision within the fidelity bar on this GPU, teacher-forced on the first
        prepared notes (2 x FIDELITY_SAMPLES samples)."""
        from onss_tui.model.fidelity import choose_precision

        precision, measured = choose_precision(reference, self._fidelity_clips(), samples=self.FIDELITY_SAMPLES)
        self.run.update_state(precision=precision)
        self.emit("supervisor", "precision", chosen=precision, measured=[m.as_dict() for m in measured])
        return reference.with_precision(precision)

    def _batch_size(self) -> int:
        b = self.recipe.generation.batch_size
        if b != "auto":
            return int(b)
        if self.recipe.engine == "preview":
            return 64
        if not self._device().startswith("cuda"):
            return 8
        return self._auto_gpu_batch()

    def _auto_gpu_batch(self) -> int:
        """From the free memory of the GPUs this run uses (NVML: no CUDA context in the supervisor)."""
        import torch

        from onss_tui.gpu import probe
        from onss_tui.model.encoder import LAYERS, dilation
        from onss_tui.model.fastgen import auto_batch, voice_bytes

        gpus = probe().gpus
        g = self.recipe.generation.gpus
        used = [x for x in gpus if x.index in g] if isinstance(g, list) else gpus[: self._workers()]
        if not used:
            return 256
        free = min(x.memory_total - x.memory_used for x in used)
        dtype = torch.bfloat16 if self._precision() == "bf16" else torch.float32
        per_voice = voice_bytes([dilation(i) for i in range(LAYERS)], dtype, self.recipe.generation.sample_length)
        return auto_batch(free, per_voice)

    def _workers(self) -> int:
        g = self.recipe.generation.gpus
        if self.recipe.engine == "nsynth" and self._device().startswith("cuda"):
            import torch

            count = torch.cuda.device_count()
            return len(g) if isinstance(g, list) else (count if g == "all" else max(1, min(int(g), count)))
        return len(g) if isinstance(g, list) else (1 if g == "all" else max(1, int(g)))

    # -- stages ------------------------------------------------------------------------------
    def stage_prepare(self) -> dict:
        warnings = prepare(self.recipe, Path(self.recipe.inputs), self.run.stage_dir("prepare"))
        for w in warnings:
            self.emit("prepare", "warning", message=w)
        return {"warnings": len(warnings)}

    def stage_embed(self) -> dict:
        if self.recipe.engine == "preview":
            return {"skipped": "the preview engine needs no embeddings"}
        _, notes = load_notes(self.run.stage_dir("prepare"))
        out = self.run.stage_dir("embed") / "encodings.npy"
        batch = 64 if self._device().startswith("cuda") else 8  # the encoder, batched on the GPU
        embed(self.model(), notes, out, batch=batch, progress=lambda d, t: self.emit("embed", "progress", done=d, total=t))
        return {"notes": len(notes)}

    def stage_interpolate(self) -> dict:
        index, _ = load_notes(self.run.stage_dir("prepare"))
        enc = None
        if self.recipe.engine == "nsynth":
            enc = np.load(self.run.stage_dir("embed") / "encodings.npy")
        plan = interpolate(self.recipe, self.run.stage_dir("interpolate"), index, enc)
        return {"sounds": len(plan.sounds), "pads": len(plan.pads)}

    def stage_plan(self) -> dict:
        sounds = load_sounds(self.run.stage_dir("interpolate"))
        shards = make_shards(len(sounds), self._batch_size(), self._workers(), self.run.stage_dir("plan") / "shards.json")
        return {"shards": len(shards), "workers": self._workers(), "batch_size": self._batch_size()}

    def _worker_inputs(self) -> dict:
        index, notes = load_notes(self.run.stage_dir("prepare"))
        inputs = {"note_index": index, "notes": notes, "sounds": load_sounds(self.run.stage_dir("interpolate"))}
        if self.recipe.engine == "nsynth":
            inputs["model"] = self.model()
            inputs["embeddings"] = np.load(self.run.stage_dir("interpolate") / "embeddings.npy", mmap_mode="r")
        return inputs

    def stage_generate(self) -> dict:
        shards = load_shards(self.run.stage_dir("plan") / "shards.json")
        if self.recipe.engine == "nsynth":
            self._choose_kernels()
        workers = max(s["worker"] for s in shards) + 1
        g = self.recipe.generation
        if workers == 1:
            run_worker(self.run, 0, shards, self.recipe.engine, self._worker_inputs, g.seed, g.save_every, self.emit)
        else:
            self._spawn_workers(workers)
        missing = [s["id"] for s in shards if not RunDir.is_done(shard_path(self.run.stage_dir("generate"), s["id"]))]
        if missing:
            raise RunError(f"{self.run.path}: generate: {len(missing)} shards unfinished (first {missing[0]}); "
                           f"see {self.run.path / 'logs'} and run again to resume.")
        return {"shards": len(shards)}

    def _spawn_workers(self, workers: int) -> None:
        logs = self.run.path / "logs"
        logs.mkdir(exist_ok=True)
        gpus = self.recipe.generation.gpus
        procs = []
        for w in range(workers):
            env = dict(os.environ)
            if self.recipe.engine == "nsynth" and self._device().startswith("cuda"):
                env["CUDA_VISIBLE_DEVICES"] = str(gpus[w] if isinstance(gpus, list) else w)
            with open(logs / f"worker-{w}.log", "ab") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "onss_tui.pipeline.worker", str(self.run.path), str(w)],
                    stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent))
        seen = 0.0
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            seen = self._forward_worker_events(seen)
        self._forward_worker_events(seen)
        failed = [w for w, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise RunError(f"{self.run.path}: generate worker {failed[0]} failed; see {logs / f'worker-{failed[0]}.log'}. "
                           "Run again to resume.")

    def _forward_worker_events(self, since: float) -> float:
        if not self.listener:
            return since
        latest = since
        for e in self.run.events():
            if e.get("stream", "").startswith("generate-w") and e["t"] > since:
                self.listener(e)
                latest = max(latest, e["t"])
        return latest

    def _shard_jobs(self, src_stage: str, dst_stage: str, prefix: str) -> tuple[list[dict], list[tuple[str, str]]]:
        shards = load_shards(self.run.stage_dir("plan") / "shards.json")
        jobs = []
        for s in shards:
            src = shard_path(self.run.stage_dir(src_stage), s["id"])
            dst = self.run.stage_dir(dst_stage) / f"{prefix}-{s['id']:05d}.npy"
            if not RunDir.is_done(dst):
                jobs.append((str(src), str(dst)))
        return shards, jobs

    def stage_clean(self) -> dict:
        c = self.recipe.clean
        shards, jobs = self._shard_jobs("generate", "clean", "shard")
        _parallel(_clean_job, [(s, d, c.mode, c.normalize_dbfs) for s, d in jobs], self.cpu_workers)
        self.emit("clean", "progress", done=len(shards), total=len(shards))
        return {"shards": len(shards), "mode": c.mode}

    def stage_pack(self) -> dict:
        shards, jobs = self._shard_jobs("clean", "pack", "rows")
        _parallel(_rows_job, jobs, self.cpu_workers)
        pack_dir = self.run.stage_dir("pack")
        written = pack_stage.build_pads(load_pad_rows(self.run.stage_dir("interpolate")), shards, pack_dir,
                                        self.run.pads_dir, pack_dir / "done",
                                        progress=lambda d, t: self.emit("pack", "progress", done=d, total=t))
        return {"pads": len(list(self.run.pads_dir.glob("*.bin"))), "written": written}

    def stage_settings(self) -> dict:
        from onss_tui.device.settings import DeviceOptions, Instrument, build_settings, write_settings

        d = self.recipe.device
        corners = [[Instrument(i.name, i.display_name, i.abbreviation) for i in c] for c in self.recipe.corners.lists()]
        options = DeviceOptions(data_directory=d.data_directory, looping=d.looping, loop_start=d.loop_start,
                                loop_end=d.loop_end, midi_channel=d.midi_channel, osc_port=d.osc_port)
        settings = build_settings(corners, self.recipe.pitches, self.recipe.resolution, options)
        if self.recipe.engine == "preview":
            settings["onss"] = {"preview": True, "note": "made by the preview engine, not NSynth"}
        write_settings(self.run.settings_path, settings)
        return {}

    def stage_validate(self) -> dict:
        from onss_tui.device.settings import validate_pack

        findings = validate_pack(self.run.settings_path, self.run.pads_dir, self.recipe.resolution, self.recipe.pitches)
        report = [f.__dict__ for f in findings]
        atomic_write_text(self.run.stage_dir("validate") / "report.json", json.dumps(report, indent=2))
        errors = [f for f in findings if f.level == "error"]
        if errors:
            raise RunError(f"{self.run.path}: the pack is not valid: {errors[0]} "
                           f"({len(errors)} errors; see {self.run.path / 'validate' / 'report.json'})")
        return {"warnings": len(findings)}
