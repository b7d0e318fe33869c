"""How far a precision's generator is from fp32: per-step KL divergence and top-1 agreement.

Both generators are teacher-forced on the same real audio (each step scored given the true past),
through the path generation takes: the one-step decoder with its ring buffers (``incremental``).

    KL_t  = sum_k p32(k | x<t) * (log p32(k | x<t) - log p(k | x<t))     nats, per step
    top-1 = mean_t [argmax p(. | x<t) == argmax p32(. | x<t)]

The bar for ``precision: auto`` is a mean KL of at most 0.01 nats per step (issue 6); the choice
itself is :func:`onss_tui.engine.auto.choose_precision`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fidelity", "fidelity", "KL_BAR"]

KL_BAR = 0.01  # nats per step


@dataclass(frozen=True)
class Fidelity:
    precision: str
    kl_mean: float  # nats per step, averaged over steps and clips
    kl_max: float
    top1: float  # fraction of steps whose most likely class agrees with fp32
    steps: int

    @property
    def meets_bar(self) -> bool:
        return self.kl_mean <= KL_BAR

    def as_dict(self) -> dict:
        return {"precision": self.precision, "kl_mean": self.kl_mean, "kl_max": self.kl_max, "top1": self.top1,
                "steps": self.steps, "meets_bar": self.meets_bar}


def compare(reference_logp: np.ndarray, logp: np.ndarray, precision: str) -> Fidelity:
    """Log-probabilities [B, T, 256] of fp32 and of another precision -> their distance."""
    ref = reference_logp.astype(np.float64)
    other = logp.astype(np.float64)
    kl = (np.exp(ref) * (ref - other)).sum(-1)  # [B, T]
    top1 = (ref.argmax(-1) == other.argmax(-1)).mean()
    return Fidelity(precision, float(kl.mean()), float(kl.max()), float(top1), int(kl.size))


def fidelity(reference, model, audio: np.ndarray, enc: np.ndarray | None = None) -> Fidelity:
    """``reference``: the fp32 NSynth; ``model``: the same weights in another precision (both
    :class:`~onss_tui.model.NSynth`). ``audio`` float32 [B, T] in [-1, 1], T a multiple of 512."""
    if enc is None:
        enc = reference.encode(audio)
    want = reference.log_probs(audio, enc, mode="incremental")
    got = model.log_probs(audio, enc, mode="incremental")
    return compare(want, got, model.precision)
