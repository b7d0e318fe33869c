"""The NSynth decoder, teacher-forced ("parallel") form: a causal WaveNet conditioned on the encoding.

    l = shift_right(x_scaled)                         l[t] = x_scaled[t-1], l[0] = 0
    l = startconv(l)                                  1 -> 512, K=3 causal, no activation
    s = skip_start(l)                                 512 -> 256 (the skip sum starts here)
    for i in 1..30 (dilation d = 2^((i-1) mod 10)):
        z = dilatedconv_i(l) + cond_map_i(enc)        512 -> 1024 causal taps (t-2d, t-d, t);
                                                      the 16 -> 1024 conditioning of frame t // 512
        g = sigmoid(z[:512]) * tanh(z[512:])          first half sigmoid, second half tanh
        l = l + res_i(g)                              512 -> 512 (res_30's output is never used)
        s = s + skip_i(g)                             512 -> 256
    s = relu(out1(relu(s)) + cond_map_out1(enc))      256 -> 256, conditioning after out1
    logits = logits(s)                                256 -> 256 mu-law classes

Shapes are [B, C, T] inside (torch conv layout); the API speaks [B, T, C].
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from onss_tui.model.encoder import BOTTLENECK, CYCLE, HOP, LAYERS, dilation

RESIDUAL = 512
GATE = 1024
SKIP = 256
CLASSES = 256


def causal_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """K=3 causal convolution: left-pad by 2d zeros so y[t] sees x[t-2d], x[t-d], x[t]."""
    return conv(F.pad(x, (2 * conv.dilation[0], 0)))


def upsample(frames: torch.Tensor, length: int, hop: int = HOP) -> torch.Tensor:
    """Nearest-neighbour: [B, C, F] -> [B, C, T], sample t takes frame t // hop."""
    return frames.repeat_interleave(hop, dim=-1)[..., :length]


class Decoder(nn.Module):
    def __init__(self, layers: int = LAYERS, cycle: int = CYCLE):
        super().__init__()
        assert cycle == CYCLE
        self.startconv = nn.Conv1d(1, RESIDUAL, 3)
        self.skip_start = nn.Conv1d(RESIDUAL, SKIP, 1)
        self.dilated = nn.ModuleList(nn.Conv1d(RESIDUAL, GATE, 3, dilation=dilation(i)) for i in range(layers))
        self.cond_map = nn.ModuleList(nn.Conv1d(BOTTLENECK, GATE, 1) for _ in range(layers))
        self.res = nn.ModuleList(nn.Conv1d(RESIDUAL, RESIDUAL, 1) for _ in range(layers))
        self.skip = nn.ModuleList(nn.Conv1d(RESIDUAL, SKIP, 1) for _ in range(layers))
        self.out1 = nn.Conv1d(SKIP, SKIP, 1)
        self.cond_map_out1 = nn.Conv1d(BOTTLENECK, SKIP, 1)
        self.logits = nn.Conv1d(SKIP, CLASSES, 1)

    def forward(self, x_scaled: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """x_scaled [B, T], enc [B, F, 16] with F * 512 >= T  ->  logits [B, T, 256]."""
        length = x_scaled.shape[1]
        enc = enc.transpose(1, 2)  # [B, 16, F]
        l = F.pad(x_scaled, (1, 0))[:, None, :length]  # [B, 1, T], shifted right by one
        l = causal_conv(self.startconv, l)  # [B, 512, T]
        s = self.skip_start(l)  # [B, 256, T]
        last = len(self.dilated) - 1
        for i, (conv, cond, res, skip) in enumerate(zip(self.dilated, self.cond_map, self.res, self.skip)):
            z = causal_conv(cast(nn.Conv1d, conv), l) + upsample(cond(enc), length)  # [B, 1024, T]
            g = torch.sigmoid(z[:, :RESIDUAL]) * torch.tanh(z[:, RESIDUAL:])  # [B, 512, T]
            if i != last:  # res_30 feeds nothing
                l = l + res(g)
            s = s + skip(g)
        s = self.out1(F.relu(s)) + upsample(self.cond_map_out1(enc), length)  # [B, 256, T]
        return self.logits(F.relu(s)).transpose(1, 2)  # [B, T, 256]

    def tf_layers(self) -> dict[str, nn.Conv1d]:
        layers = {
            "startconv": self.startconv,
            "skip_start": self.skip_start,
            "out1": self.out1,
            "cond_map_out1": self.cond_map_out1,
            "logits": self.logits,
        }
        for i in range(len(self.dilated)):
            n = i + 1
            layers[f"dilatedconv_{n}"] = cast(nn.Conv1d, self.dilated[i])
            layers[f"cond_map_{n}"] = cast(nn.Conv1d, self.cond_map[i])
            layers[f"res_{n}"] = cast(nn.Conv1d, self.res[i])
            layers[f"skip_{n}"] = cast(nn.Conv1d, self.skip[i])
        return layers
