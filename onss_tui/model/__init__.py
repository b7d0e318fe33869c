"""NSynth WaveNet autoencoder in PyTorch, faithful to Magenta's graph, loading its TF checkpoint.

    from onss_tui.model import NSynth
    m = NSynth.load(path, device="cpu", precision="fp32", ema=False)
    enc = m.encode(audio)            # [B, T] -> [B, T // 512, 16]
    lp = m.log_probs(audio, enc)     # [B, T, 256]
    out = m.generate(enc, seed=0)    # [B, frames * 512]

Names are imported on first use, so that the checkpoint reader and installer (and the CLI) do not
pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "NSynth": "onss_tui.model.nsynth",
    "PRECISIONS": "onss_tui.vocab",
    "BundleReader": "onss_tui.model.checkpoint",
    "CheckpointError": "onss_tui.model.checkpoint",
    "write_bundle": "onss_tui.model.checkpoint",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'onss_tui.model' has no attribute {name!r}")
