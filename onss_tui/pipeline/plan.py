"""The run plan: every setting of a run, decided once, frozen in ``plan.json``.

The plan stage resolves each ``auto`` of the recipe (precision, kernels, batch size, GPUs) on the
machine the run will use, and lays out the work: the shards of sounds, the executors that run
them, and what it will cost (time, disk). Every later stage, every generate worker, the CLI and
the dashboard read the plan; nothing re-derives a setting it holds. A resumed run keeps its plan.

    machine = Machine.detect()                    # NVML's GPUs, torch's CUDA, the CPU count
    layout = lay_out(recipe, machine)             # no GPU work: what --dry-run shows
    plan = decide(recipe, machine, layout, clips) # measures the autos on the run's first GPU
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from onss_tui.gpu import GpuProbe, probe
from onss_tui.pipeline.context import RunError
from onss_tui.pipeline.grid import plan_sounds, stage_bytes
from onss_tui.recipe import Recipe, recipe_yaml
from onss_tui.vocab import AUTO, Engine, Kernels, Precision

__all__ = ["PlanError", "Cluster", "Machine", "Shard", "Executor", "Estimates", "Measurement", "RunPlan", "Layout",
           "lay_out", "decide", "make_shards", "recipe_digest", "stage_recipe_digest", "LATE_SECTIONS"]

PLAN_VERSION = 1
PREVIEW_BATCH = 64  # sounds a preview shard morphs at once (CPU, no memory limit to speak of)
CPU_BATCH = 8  # voices the nsynth engine generates at once on a CPU (tiny sets only)
ENCODE_BATCH = {"cuda": 64, "cpu": 8}  # notes the encoder takes at once
FIDELITY_SAMPLES = 2048  # teacher-forced samples per clip (two clips) when precision or kernels are measured
KERNEL_STEPS = 128  # timed generation steps per candidate layer step (after as many untimed ones)
KERNEL_BATCH = 1024  # at most: the plan times on one GPU while the others wait


class PlanError(RunError):
    """The recipe asks for something this machine cannot do; the message names the field and the fix."""


# --------------------------------------------------------------------------------------------
# what the plan may use


@dataclass(frozen=True)
class Cluster:
    """A run planned for Slurm: ``tasks`` generate tasks of ``per_task`` executors each (one per GPU
    of a task for the nsynth engine, one CPU worker for the preview), as the submission laid out."""

    tasks: int
    per_task: int


@dataclass
class Machine:
    """The machine a run is planned on: its GPUs (NVML, so no CUDA context in the supervisor),
    whether torch reaches them, and its CPUs. Tests give a fake with recorded devices. On Slurm
    (``cluster``), the head job's node: its GPU stands for the workers' GPU model."""

    gpus: GpuProbe
    cuda: bool  # torch sees CUDA GPUs
    cpu_count: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    cluster: Cluster | None = None

    @classmethod
    def detect(cls, device: str | None = None, cpu_workers: int | None = None) -> Machine:
        """This machine. ``device``: ``cpu`` plans a CPU run whatever GPUs there are; ``cuda:N``
        only GPU N."""
        cpus = cpu_workers or max(1, os.cpu_count() or 1)
        if device is not None and device.startswith("cpu"):
            return cls(GpuProbe(problem="--device cpu"), False, cpus)
        import torch

        found = probe()
        if device is not None and ":" in device:
            index = int(device.split(":", 1)[1])
            found = GpuProbe(found.driver, found.cuda_driver, [g for g in found.gpus if g.index == index],
                             found.problem)
        return cls(found, torch.cuda.is_available() and bool(found.gpus), cpus)

    def device_of(self, gpu: int | None) -> str:
        """The torch device that reaches GPU ``gpu`` (NVML's index) from this process (in a Slurm
        job: its first allocated GPU, which Slurm shows as the first in CUDA_VISIBLE_DEVICES)."""
        if self.cluster is not None:
            return "cuda:0" if self.cuda else "cpu"
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # torch's indices are NVML's then
        return "cpu" if gpu is None else f"cuda:{gpu}"

    def worker_device(self, gpu: int | None) -> str:
        """The torch device inside a worker started with ``CUDA_VISIBLE_DEVICES=<gpu>``."""
        return "cpu" if gpu is None else "cuda:0"

    def why_no_fused_kernels(self, device: str) -> str | None:
        """Why the fused Triton kernels cannot run on ``device`` (None: they can)."""
        import torch

        from onss_tui.engine import kernels

        return kernels.why_unavailable(torch.device(device))


# --------------------------------------------------------------------------------------------
# the plan's parts


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shard(_Frozen):
    """Consecutive sounds ``[start, stop)`` generated as one batch by one executor."""

    id: int
    start: int
    stop: int
    worker: int  # the executor's index

    @property
    def size(self) -> int:
        return self.stop - self.start


class Executor(_Frozen):
    """Who generates a share of the shards: a process on this machine, on one GPU or on the CPU,
    or one slot of a Slurm generate task (its node and GPU known only once the task runs)."""

    index: int
    kind: Literal["local", "slurm"] = "local"  # local: a process the supervisor starts
    task: int | None = None  # slurm: the generate array's index that runs it
    slot: int | None = None  # slurm: which of the task's GPUs (CUDA_VISIBLE_DEVICES, in order)
    gpu: int | None = None  # NVML's index of its GPU; the worker runs with CUDA_VISIBLE_DEVICES=<gpu>
    device: str = "cpu"  # the torch device inside the worker
    label: str = "CPU"  # how viewers name it
    threads: int | None = None  # a CPU worker's share of the cores (more threads than cores only spin)

    @property
    def environment(self) -> dict[str, str]:
        """What the worker's environment adds: its one GPU."""
        return {} if self.gpu is None else {"CUDA_VISIBLE_DEVICES": str(self.gpu), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


class Measurement(_Frozen):
    """How an ``auto`` was decided: what was measured where, and the numbers."""

    setting: str  # "precision" | "kernels"
    chosen: str
    gpu: int | None  # the GPU it was measured on
    device: str
    details: dict[str, Any] = Field(default_factory=dict)


class Estimates(_Frozen):
    seconds: float | None  # generation's wall time; None where no benchmark covers these devices
    time_text: str  # the same in words, saying whose measurement it is
    disk_bytes: dict[str, int]  # what each stage writes into the run folder
    free_bytes: int | None  # free space where the run folder lives, when planned


class RunPlan(_Frozen):
    """plan.json. Written once, atomically, by the plan stage; read by everything after it."""

    version: int = PLAN_VERSION
    recipe_sha256: str  # of the run's recipe.yaml: a plan belongs to one recipe
    engine: Engine
    precision: Precision
    kernels: Kernels
    batch_size: int
    encode_batch: int
    checkpoint: str | None  # the NSynth checkpoint's absolute prefix (None: the preview engine)
    seed: int
    sample_length: int
    save_every: int
    sounds: int
    shards: list[Shard]
    executors: list[Executor]
    cpu_workers: int  # processes for the CPU stages (clean, pack)
    measurements: list[Measurement] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict)  # setting -> why it has its value, in words
    estimates: Estimates

    def executor(self, index: int) -> Executor:
        return self.executors[index]

    def shards_of(self, worker: int) -> list[Shard]:
        return [s for s in self.shards if s.worker == worker]


def recipe_digest(recipe: Recipe) -> str:
    """What a run's outputs depend on: the recipe but its ``slurm:`` section (where it runs, not what)."""
    return hashlib.sha256(recipe_yaml(recipe.model_copy(update={"slurm": None})).encode()).hexdigest()


# Recipe sections that only a late stage reads, and that stage: a change of one redoes that stage and
# those after it, and keeps the earlier ones (a new clean mode does not generate again).
LATE_SECTIONS = {"clean": "clean", "device": "settings"}


def stage_recipe_digest(recipe: Recipe, stage: str) -> str:
    """What ``stage``'s outputs depend on in the recipe: :func:`recipe_digest` with the sections
    that only later stages read set to their defaults."""
    from onss_tui.pipeline.rundir import STAGES

    later = {section: type(getattr(recipe, section))() for section, first in LATE_SECTIONS.items()
             if STAGES.index(stage) < STAGES.index(first)}
    return recipe_digest(recipe.model_copy(update=later))


def make_shards(n_sounds: int, shard_size: int, workers: int) -> list[Shard]:
    """Consecutive sound ranges of at most ``shard_size``, balanced by sound count: the number of
    shards is a multiple of the workers, their sizes differ by at most one sound, and worker w
    takes shards w, w+W, ... So every GPU gets the same work (118,016 sounds in batches of 4096 on
    8 GPUs: 32 shards of 3,688, four a GPU, not 29 shards with five GPUs doing four and three doing
    three)."""
    workers = max(workers, 1)
    count = max(1, -(-n_sounds // shard_size))
    count = min(-(-count // workers) * workers, max(n_sounds, 1))  # (never an empty shard)
    base, extra = divmod(n_sounds, count)
    shards: list[Shard] = []
    start = 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        if stop > start:
            shards.append(Shard(id=len(shards), start=start, stop=stop, worker=len(shards) % workers))
        start = stop
    return shards


# --------------------------------------------------------------------------------------------
# the layout: everything that needs no GPU work


@dataclass
class Layout:
    """What a run would do on this machine, before any measurement (``onss run --dry-run``)."""

    engine: str
    sounds: int
    pads: int
    executors: list[Executor]
    precision: str  # the recipe's, or its default here; "auto" = measured when the plan stage runs
    kernels: str
    batch_size: int | None  # None: auto on a GPU, decided from free memory after the precision
    batch_bound: int  # the batch the layout assumes meanwhile (the fp32 one: the smallest)
    free_gpu_bytes: int | None
    reasons: dict[str, str]
    disk_bytes: dict[str, int]

    @property
    def on_gpu(self) -> bool:
        return any(e.gpu is not None or (e.kind == "slurm" and e.device != "cpu") for e in self.executors)


def _gpu_indices(recipe: Recipe, machine: Machine) -> list[int]:
    """The GPUs the recipe's ``generation.gpus`` names on this machine (nsynth engine, CUDA)."""
    g = recipe.generation.gpus
    have = [x.index for x in machine.gpus.gpus]
    if isinstance(g, list):
        missing = [i for i in g if i not in have]
        if missing:
            raise PlanError(f"generation.gpus names GPU {missing[0]}, but this machine has "
                            f"{'GPUs ' + ', '.join(map(str, have)) if have else 'no GPU'}. "
                            "Set generation.gpus to GPUs it has, or to 'all'.")
        return list(g)
    if g == "all":
        return have
    return have[: max(1, int(g))]


def _slurm_executors(recipe: Recipe, machine: Machine, cluster: Cluster) -> tuple[list[Executor], str]:
    """Every slot of every generate task; a task's node and GPUs are known once it runs."""
    gpu = recipe.engine == "nsynth" and machine.cuda
    out: list[Executor] = []
    for t in range(cluster.tasks):
        for k in range(cluster.per_task):
            out.append(Executor(index=len(out), kind="slurm", task=t, slot=k, device="cuda:0" if gpu else "cpu",
                                label=f"task {t} GPU {k}" if gpu else f"task {t} CPU"))
    where = "GPU" if gpu else "CPU worker"
    return out, f"Slurm: {cluster.tasks} generate task(s) of {cluster.per_task} {where}(s) each (slurm: section)"


def _executors(recipe: Recipe, machine: Machine) -> tuple[list[Executor], str]:
    if machine.cluster is not None:
        return _slurm_executors(recipe, machine, machine.cluster)
    g = recipe.generation.gpus
    if recipe.engine == "nsynth" and machine.cuda:
        gpus = _gpu_indices(recipe, machine)
        names = {x.index: x.name.removeprefix("NVIDIA ") for x in machine.gpus.gpus}
        return ([Executor(index=w, gpu=i, device=machine.worker_device(i), label=f"GPU {i} {names[i]}")
                 for w, i in enumerate(gpus)], f"GPUs {', '.join(map(str, gpus))} (generation.gpus: {g})")
    count = len(g) if isinstance(g, list) else (1 if g == "all" else max(1, int(g)))
    why = "the preview engine runs on CPUs" if recipe.engine == "preview" else "no CUDA GPU: NSynth on the CPU"
    threads = max(1, machine.cpu_count // count)
    return ([Executor(index=w, label=f"CPU worker {w}", threads=threads) for w in range(count)],
            f"{count} CPU worker(s): {why}")


def _voice_bytes(precision: str, sample_length: int) -> int:
    from onss_tui.engine.fastgen import voice_bytes
    from onss_tui.model.encoder import LAYERS, dilation
    from onss_tui.vocab import torch_dtype

    return voice_bytes([dilation(i) for i in range(LAYERS)], torch_dtype(precision), sample_length)


def _gpu_batch(free: int, precision: str, sample_length: int) -> int:
    from onss_tui.engine.fastgen import auto_batch

    return auto_batch(free, _voice_bytes(precision, sample_length))


def lay_out(recipe: Recipe, machine: Machine) -> Layout:
    """The run's executors, counts and costs, and every setting that needs no measurement."""
    g = recipe.generation
    if recipe.engine == "nsynth":
        _check_checkpoint(recipe)
    grid = plan_sounds(recipe.corners.names(), recipe.pitches, recipe.resolution)
    executors, where = _executors(recipe, machine)
    reasons = {"executors": where}
    gpu = executors[0].gpu is not None or (machine.cluster is not None and executors[0].device != "cpu")
    precision, kernels = g.precision, g.kernels
    if recipe.engine == "preview":
        precision, kernels = "fp32", "torch"
        reasons["precision"] = reasons["kernels"] = "the preview engine runs no model"
    else:
        if precision == AUTO and not gpu:
            precision, reasons["precision"] = "fp32", "auto: fp32 on a CPU"
        elif precision != AUTO:
            reasons["precision"] = "the recipe's"
        if kernels == AUTO and not gpu:
            kernels, reasons["kernels"] = "torch", "auto: PyTorch ops on a CPU"
        elif kernels != AUTO:
            reasons["kernels"] = "the recipe's"
        if kernels == "triton":  # refused before any work where they cannot run
            why = machine.why_no_fused_kernels(machine.device_of(executors[0].gpu))
            if why:
                raise PlanError(f"generation.kernels is 'triton', but {why}. "
                                "Set generation.kernels to auto (or torch) in the recipe.")
    free = None
    if gpu:
        used = ([x for x in machine.gpus.gpus if x.index in {e.gpu for e in executors}] if machine.cluster is None
                else machine.gpus.gpus[:1])  # Slurm: the head job's GPU, of the workers' model
        free = min(x.memory_total - x.memory_used for x in used)
    batch: int | None
    if g.batch_size != AUTO:
        batch, reasons["batch_size"] = int(g.batch_size), "the recipe's"
    elif recipe.engine == "preview":
        batch, reasons["batch_size"] = PREVIEW_BATCH, "auto: the preview engine's"
    elif not gpu:
        batch, reasons["batch_size"] = CPU_BATCH, "auto: the CPU's"
    elif precision != AUTO:
        assert free is not None
        batch = _gpu_batch(free, precision, g.sample_length)
        reasons["batch_size"] = f"auto: from {free / 2**30:.1f} GiB free on the smallest of the run's GPUs"
    else:
        batch = None
    bound = batch if batch is not None else _gpu_batch(free or 0, "fp32", g.sample_length)
    counts = [len(c) for c in recipe.corners.lists()]
    pads = counts[0] * counts[1] * counts[2] * counts[3]
    disk = stage_bytes(len(grid.sounds), sum(counts), len(recipe.pitches), recipe.resolution, pads, g.sample_length)
    return Layout(recipe.engine, len(grid.sounds), pads, executors, precision, kernels, batch, bound, free,
                  reasons, disk)


def estimate(layout: Layout, machine: Machine, precision: str, sample_length: int, run_folder: Path) -> Estimates:
    from onss_tui.pipeline.throughput import cpu_name, project

    if layout.engine == "preview":
        seconds, text = None, "seconds (the preview engine)"
    else:
        names = {x.index: x.name for x in machine.gpus.gpus}
        head = machine.gpus.gpus[0].name if machine.gpus.gpus else cpu_name()  # Slurm: the workers' model
        devices = [names[e.gpu] if e.gpu is not None else head if e.kind == "slurm" and e.device != "cpu"
                   else cpu_name() for e in layout.executors]
        p = project(layout.sounds, sample_length, devices, precision)
        seconds, text = p.seconds, p.text
    folder = run_folder
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    return Estimates(seconds=seconds, time_text=text, disk_bytes=layout.disk_bytes, free_bytes=free)


# --------------------------------------------------------------------------------------------
# deciding: the measurements of the autos, on a GPU the run uses


Emit = Callable[..., None]


def _load(checkpoint: Path, device: str, precision: str):
    from onss_tui.model import NSynth

    return NSynth.load(checkpoint, device=device, precision=precision)


def _measure_precision(checkpoint: Path, device: str, clips: np.ndarray, samples: int) -> tuple[str, list[dict]]:
    """The fastest precision within the fidelity bar on this GPU, teacher-forced on ``clips``."""
    from onss_tui.engine import auto

    reference = _load(checkpoint, device, "fp32")
    precision, measured = auto.choose_precision(reference, clips, samples=samples)
    return precision, [m.as_dict() for m in measured]


def _measure_kernels(checkpoint: Path, device: str, precision: str, batch: int, clips: np.ndarray,
                     samples: int) -> tuple[str, dict]:
    """Time both layer steps at the run's batch (at most KERNEL_BATCH voices) and keep the faster,
    the fused kernels only within the fidelity bar (their KL to fp32 PyTorch on the clips)."""
    from onss_tui.engine import auto

    model = _load(checkpoint, device, precision)
    checked: dict[str, dict] = {}

    def acceptable(k: str) -> bool:
        checked[k] = kernel_fidelity(model, k, clips, samples)
        return bool(checked[k]["meets_bar"])

    timed = min(batch, KERNEL_BATCH)
    choice, rates = auto.choose_kernels(model, timed, steps=KERNEL_STEPS, warm=KERNEL_STEPS, acceptable=acceptable)
    return choice, {"batch": timed, "samples_per_s": rates, "fidelity": checked}


def kernel_fidelity(model, kernels: str, clips: np.ndarray, samples: int) -> dict:
    """``model`` with other kernels against fp32 PyTorch, teacher-forced on ``samples`` of each clip."""
    from onss_tui.engine.fidelity import fidelity

    reference = model.with_precision("fp32", kernels="torch")
    enc = reference.encode(clips)
    return fidelity(reference, model.with_precision(model.precision, kernels=kernels), clips[:, :samples],
                    enc).as_dict()


def decide(recipe: Recipe, machine: Machine, layout: Layout, clips: np.ndarray | None, run_folder: Path,
           emit: Emit | None = None, fidelity_samples: int = FIDELITY_SAMPLES) -> RunPlan:
    """The plan: the layout's settings, each remaining ``auto`` measured on the run's first GPU
    (the model loaded there once per measurement, then released), the shards and the estimates.
    ``clips``: the run's first prepared notes [2, T], on which precision and kernels are measured."""
    g = recipe.generation
    emit = emit or (lambda *a, **k: None)
    reasons = dict(layout.reasons)
    measurements: list[Measurement] = []
    first = layout.executors[0].gpu
    device = machine.device_of(first)
    checkpoint = _checkpoint(recipe)
    precision = layout.precision
    if precision == AUTO:
        assert clips is not None
        precision, measured = _measure_precision(checkpoint, device, clips, fidelity_samples)
        measurements.append(Measurement(setting="precision", chosen=precision, gpu=first, device=device,
                                        details={"measured": measured}))
        reasons["precision"] = f"auto: measured on GPU {first}"
        emit("supervisor", "precision", chosen=precision, gpu=first, measured=measured)
    batch = layout.batch_size
    if batch is None:
        assert layout.free_gpu_bytes is not None  # read before any model was loaded
        batch = _gpu_batch(layout.free_gpu_bytes, precision, g.sample_length)
        reasons["batch_size"] = (f"auto: from {layout.free_gpu_bytes / 2**30:.1f} GiB free on the smallest of "
                                 f"the run's GPUs, in {precision}")
    kernels = layout.kernels
    if kernels == AUTO:
        if machine.why_no_fused_kernels(device):
            kernels, reasons["kernels"] = "torch", f"auto: {machine.why_no_fused_kernels(device)}"
        else:
            assert clips is not None
            kernels, details = _measure_kernels(checkpoint, device, precision, batch, clips, fidelity_samples)
            measurements.append(Measurement(setting="kernels", chosen=kernels, gpu=first, device=device,
                                            details=details))
            reasons["kernels"] = f"auto: timed on GPU {first} at batch {details['batch']}"
            emit("supervisor", "kernels", chosen=kernels, gpu=first, **details)
    shards = make_shards(layout.sounds, batch, len(layout.executors))
    return RunPlan(
        recipe_sha256=stage_recipe_digest(recipe, "plan"), engine=recipe.engine, precision=precision,  # type: ignore[arg-type]
        kernels=kernels,  # type: ignore[arg-type]
        batch_size=batch, encode_batch=ENCODE_BATCH["cuda" if first is not None else "cpu"],
        checkpoint=str(checkpoint) if recipe.engine == "nsynth" else None, seed=g.seed,
        sample_length=g.sample_length, save_every=g.save_every, sounds=layout.sounds, shards=shards,
        executors=layout.executors, cpu_workers=machine.cpu_count, measurements=measurements, reasons=reasons,
        estimates=estimate(layout, machine, precision, g.sample_length, run_folder))


def _checkpoint(recipe: Recipe) -> Path:
    from onss_tui.model.install import default_checkpoint

    return Path(recipe.checkpoint) if recipe.checkpoint else default_checkpoint()


def _check_checkpoint(recipe: Recipe) -> None:
    """The nsynth engine needs a checkpoint: refused before any work where there is none."""
    from onss_tui.model.checkpoint import CheckpointError, resolve_prefix

    prefix = _checkpoint(recipe)
    try:
        resolve_prefix(prefix)
    except CheckpointError as exc:
        fix = ("Fix 'checkpoint' in the recipe" if recipe.checkpoint else
               "Install it with 'onss model download' (or set 'checkpoint' in the recipe)")
        raise PlanError(f"the nsynth engine needs the NSynth checkpoint: {str(exc).rstrip('.')}. {fix}, "
                        "or set engine: preview to check the layout without it.") from None
