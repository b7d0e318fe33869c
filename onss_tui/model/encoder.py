"""The NSynth encoder: a non-causal temporal WaveNet that summarises 512 samples in 16 numbers.

    x_scaled [B, T]  (mu-law levels q / 128, T % 512 == 0)
      -> ae_startconv (1 -> 128, K=3, no activation)
      -> 30 x { h = relu(conv_K3_dilated(relu(en)));  en = en + ae_res(h) }   dilation 2^(i mod 10)
      -> ae_bottleneck (128 -> 16, 1x1)
      -> mean over each 512-sample hop  ->  [B, T / 512, 16]

Non-causal K=3 convolutions see (t-d, t, t+d) with zero padding at both ends (spec §2.1, §2.2).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

HOP = 512
WIDTH = 128
BOTTLENECK = 16
LAYERS = 30
CYCLE = 10


def dilation(i: int) -> int:
    """Dilation of layer i (0-based): 1, 2, 4, ..., 512, repeated three times."""
    return 2 ** (i % CYCLE)


class Encoder(nn.Module):
    def __init__(self, width: int = WIDTH, bottleneck: int = BOTTLENECK, layers: int = LAYERS, hop: int = HOP):
        super().__init__()
        self.hop = hop
        self.startconv = nn.Conv1d(1, width, 3, padding=1)
        self.dilated = nn.ModuleList(
            nn.Conv1d(width, width, 3, dilation=dilation(i), padding=dilation(i)) for i in range(layers)
        )
        self.res = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in range(layers))
        self.bottleneck = nn.Conv1d(width, bottleneck, 1)

    def forward(self, x_scaled: torch.Tensor) -> torch.Tensor:
        batch, length = x_scaled.shape  # [B, T]
        if length % self.hop:
            raise ValueError(f"encoder input length {length} is not a multiple of {self.hop}")
        en = self.startconv(x_scaled[:, None, :])  # [B, 128, T]
        for conv, res in zip(self.dilated, self.res):
            h = F.relu(conv(F.relu(en)))  # [B, 128, T]
            en = en + res(h)
        z = self.bottleneck(en)  # [B, 16, T]
        frames = z.unflatten(-1, (length // self.hop, self.hop)).mean(-1)  # [B, 16, T/512]
        return frames.transpose(1, 2)  # [B, T/512, 16]

    def tf_layers(self) -> dict[str, nn.Conv1d]:
        """This module's convolutions under their checkpoint layer names."""
        layers = {"ae_startconv": self.startconv, "ae_bottleneck": self.bottleneck}
        for i, (conv, res) in enumerate(zip(self.dilated, self.res, strict=True), start=1):
            layers[f"ae_dilatedconv_{i}"] = cast(nn.Conv1d, conv)
            layers[f"ae_res_{i}"] = cast(nn.Conv1d, res)
        return layers
