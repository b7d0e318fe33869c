"""The words onss uses for its settings and states, each defined once.

The recipe's fields, the CLI's choices, the wizard's selects, the run plan and the engines all read
these; nothing else spells them out. ``choices(T)`` gives the values of a ``Literal`` type in order.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "AUTO", "Engine", "ENGINES", "Precision", "PRECISIONS", "PrecisionSetting", "Kernels", "KERNELS",
    "KernelsSetting", "RECIPE_KERNELS", "CleanMode", "CLEAN_MODES", "RunStatus", "StageStatus",
    "SAMPLE_RATE", "ROW_LENGTH", "choices", "torch_dtype", "bytes_per_value",
]

AUTO = "auto"

# the generation engines: Magenta's WaveNet, or a spectral morph for checking a layout in seconds
Engine = Literal["nsynth", "preview"]

# arithmetic of the generator; "auto" lets the plan measure the fastest within the fidelity bar
Precision = Literal["fp32", "tf32", "bf16"]
PrecisionSetting = Literal["auto", "fp32", "tf32", "bf16"]

# the generator's layer step: PyTorch ops, fused Triton kernels, or many steps a launch (batch <= 64)
Kernels = Literal["torch", "triton", "persistent"]
# what a recipe may ask for (the persistent kernel is not yet measured on a GPU: bench only)
KernelsSetting = Literal["auto", "torch", "triton"]

CleanMode = Literal["mp3", "lowpass", "none"]

# a run as a whole, and each of its stages
RunStatus = Literal["running", "done", "failed", "stopped", "interrupted"]
StageStatus = Literal["pending", "running", "done", "failed"]

SAMPLE_RATE = 16000
ROW_LENGTH = 60000  # samples in one row of a device pad (3.75 s at 16 kHz)


def choices(literal: object) -> tuple[str, ...]:
    """The values of a ``Literal[...]`` type, in the order written."""
    return tuple(get_args(literal))


ENGINES = choices(Engine)
PRECISIONS = choices(Precision)
KERNELS = choices(Kernels)
RECIPE_KERNELS = choices(KernelsSetting)
CLEAN_MODES = choices(CleanMode)


def bytes_per_value(precision: str) -> int:
    """Bytes of one stored weight or ring-buffer value in a precision (bf16: 2, else float32)."""
    return 2 if precision == "bf16" else 4


def torch_dtype(precision: str):
    """The dtype the generator keeps its weights and ring buffers in for a precision."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32
