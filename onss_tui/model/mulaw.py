"""8-bit mu-law companding exactly as Magenta's NSynth code does it (spec §1).

encode:  c = sign(x) * ln(1 + 255 |x|) / ln(256);  q = floor(128 c), clamped to [-128, 127]
         (float32 arithmetic throughout, as TensorFlow computed it). Class index k = q + 128.
decode:  y = (q + 0.5) * 2 / 256;  out = sign(y) / 255 * (256^|y| - 1);  q == 0 -> exactly 0.0
Both networks see x_scaled = q / 128, the quantised companded signal, not raw audio.
"""

from __future__ import annotations

import numpy as np
import torch

MU = 255
N_CLASSES = 256

__all__ = ["MU", "N_CLASSES", "mu_law", "inv_mu_law", "INV_MU_LAW_TABLE", "mu_law_torch", "scaled_input"]


def mu_law(x: np.ndarray) -> np.ndarray:
    """Linear audio in [-1, 1] -> int16 mu-law level q in [-128, 127]."""
    x = np.asarray(x, dtype=np.float32)
    arg = np.float32(1) + np.float32(MU) * np.abs(x)  # float32, as TF computed it
    # ln in double, rounded once to float32: a correctly rounded float32 log, identical in numpy
    # and torch (their own float32 logs differ by an ulp now and then, which moves bin edges).
    log = np.log(arg.astype(np.float64)).astype(np.float32)
    companded = np.sign(x) * log / np.float32(np.log(1 + MU))
    q = np.floor(companded * np.float32(128))
    return np.clip(q, -128, 127).astype(np.int16)


def inv_mu_law(q: np.ndarray) -> np.ndarray:
    """mu-law level q in [-128, 127] -> float32 audio at the bin centre; q == 0 gives 0.0."""
    q = np.asarray(q).astype(np.float32)
    y = (q + np.float32(0.5)) * np.float32(2.0) / np.float32(MU + 1)
    # 256**|y| rounded from double: the correctly rounded float32 power that Magenta's numpy had
    # (numpy 2's SIMD float32 power differs by an ulp on a third of the bins).
    power = (np.float64(MU + 1) ** np.abs(y).astype(np.float64)).astype(np.float32)
    out = np.sign(y) / np.float32(MU) * (power - np.float32(1))
    return np.where(q == 0, np.float32(0), out).astype(np.float32)


# Decoded amplitude for each class k = q + 128; generation looks samples up here.
INV_MU_LAW_TABLE: np.ndarray = inv_mu_law(np.arange(-128, 128))


def mu_law_torch(x: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`mu_law` (float32 math), returning int64 levels q in [-128, 127]."""
    x = x.to(torch.float32)
    arg = 1.0 + MU * torch.abs(x)  # float32
    log = torch.log(arg.to(torch.float64)).to(torch.float32)  # correctly rounded float32 log, as above
    companded = torch.sign(x) * log / float(np.float32(np.log(1 + MU)))
    return torch.floor(companded * 128.0).clamp_(-128, 127).to(torch.int64)


def scaled_input(audio: torch.Tensor) -> torch.Tensor:
    """The network input q / 128 for linear audio: [B, T] float -> [B, T] float32."""
    return mu_law_torch(audio).to(torch.float32) / 128.0
