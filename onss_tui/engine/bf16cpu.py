"""bf16 on a CPU: bfloat16 arithmetic taken in float32, on operands rounded to bfloat16.

Most CPUs have no bfloat16 instructions; there PyTorch's bfloat16 convolutions run 20 to 40 times
slower than float32 ones, and its bfloat16 matmuls 20 to 170 times slower. The product of two
bfloat16 values is exact in float32, so rounding the operands to bfloat16, widening them and
multiplying in float32 is the tensor cores' arithmetic (bfloat16 products, float32 accumulation)
but for the order of the sums:

    Bf16ConvOnCpu     autocast's convolutions (the parallel decoder and the encoder), for
                      :meth:`~onss_tui.model.nsynth.NSynth.precision_scope`
    matmul_dtype      what the generator's PyTorch layer step multiplies in: float32 on a CPU
    widen             its weights in that dtype (the exact float32 widening of the bfloat16 ones)
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["Bf16ConvOnCpu", "matmul_dtype", "widen"]


class Bf16ConvOnCpu(TorchFunctionMode):
    """bf16 autocast's convolutions, for a CPU: operands rounded to bfloat16, multiplied and summed
    in float32, the result rounded to bfloat16 (what autocast gives: oneDNN's bfloat16 convolution
    accumulates in float32). The same arithmetic but for the order of the sums; where the CPU has no
    bfloat16 instructions (most have none) autocast's own path runs 20 to 40 times slower."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is not F.conv1d:
            return func(*args, **kwargs)
        x, w, *rest = args
        bias = rest.pop(0) if rest else kwargs.pop("bias", None)

        def low(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(torch.bfloat16).float()

        return F.conv1d(low(x), low(w), low(bias), *rest, **kwargs).to(torch.bfloat16)


def matmul_dtype(device: torch.device, compute_dtype: torch.dtype) -> torch.dtype:
    """The dtype the PyTorch layer step multiplies in: the one its weights are stored in, but on a
    CPU float32 (operands rounded to ``compute_dtype`` first, so below float32 the products are
    still bfloat16 products)."""
    return torch.float32 if device.type == "cpu" else compute_dtype


def widen(weights: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """``weights`` in ``dtype`` (the weights themselves where they are in it already)."""
    return [w.to(dtype) for w in weights]
