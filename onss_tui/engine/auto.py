"""What ``auto`` picks for a run: the precision (by fidelity to fp32) and the layer step (by speed).

    choose_precision   the fastest precision whose mean per-step KL to fp32 meets KL_BAR on this device
    choose_kernels     the fastest layer step at the run's batch, timed as a run generates
    kernel_choices     the layer steps worth timing on a device

Both measure on the device the run uses (never a table): what is fastest and what is faithful
depend on the GPU, its driver and Triton.
"""

from __future__ import annotations

import time

import numpy as np

from onss_tui.engine.fidelity import Fidelity, compare

__all__ = ["choose_precision", "choose_kernels", "kernel_choices", "timed_steps", "sync"]


def choose_precision(reference, audio: np.ndarray, candidates: tuple[str, ...] = ("bf16", "tf32"),
                     samples: int | None = None) -> tuple[str, list[Fidelity]]:
    """The fastest of ``candidates`` (fastest first) whose fidelity to fp32 meets the bar on this
    device, measured on the first ``samples`` of ``audio`` (whole notes, encoded whole); fp32 when
    none does. Returns the choice and what was measured."""
    enc = reference.encode(audio)
    audio = audio[:, :samples] if samples else audio
    want = reference.log_probs(audio, enc, mode="incremental")
    measured = []
    for precision in candidates:
        found = compare(want, reference.with_precision(precision).log_probs(audio, enc, mode="incremental"), precision)
        measured.append(found)
        if found.meets_bar:
            return precision, measured
    return "fp32", measured


def sync(model) -> None:
    """Wait for the model's GPU (a no-op on a CPU)."""
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def timed_steps(model, batch: int, steps: int, warm: int):
    """Seconds for ``steps`` generation steps of ``batch`` voices after ``warm`` untimed ones, as
    a run generates (CUDA graphs on a GPU); and the generation."""
    from onss_tui.model.encoder import HOP

    enc = np.random.default_rng(1).normal(0, 3, (batch, 1 + (steps + warm) // HOP, 16)).astype(np.float32)
    gen = model.generation(enc)
    with model.precision_scope():
        gen.advance(warm)
        sync(model)
        t0 = time.perf_counter()
        gen.advance(steps)
        sync(model)
        dt = time.perf_counter() - t0
    gen.check()  # a persistent launch that stalled timed nothing worth keeping
    return dt, gen


def kernel_choices(model) -> list[str]:
    """The layer steps worth timing on the model's device: the fused kernels on a GPU with Triton
    (Triton's CPU interpreter is for tests, not for speed). The persistent kernel only when asked
    for by name (``--kernels persistent``) until a GPU session has measured it."""
    from onss_tui.engine import kernels

    return ["torch", "triton"] if model.device.type == "cuda" and kernels.available(model.device) else ["torch"]


def choose_kernels(model, batch: int, steps: int = 128, warm: int = 128, acceptable=None,
                   candidates: list[str] | None = None) -> tuple[str, dict]:
    """The faster layer step for this model (its device and precision) at ``batch`` voices,
    timed on ``steps`` steps after ``warm``. ``acceptable(kernels) -> bool`` may veto a faster
    candidate (the runner checks its fidelity). Returns the choice and the samples/s measured."""
    import torch

    rates = {}
    for k in candidates or kernel_choices(model):
        dt, gen = timed_steps(model.with_precision(model.precision, kernels=k), batch, steps, warm)
        rates[k] = round(batch * steps / dt, 1)
        del gen
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
    for k in sorted(rates, key=lambda name: rates[name], reverse=True):
        if k == "torch" or acceptable is None or acceptable(k):
            return k, rates
    return "torch", rates
