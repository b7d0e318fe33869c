"""NSynth WaveNet autoencoder in PyTorch, faithful to Magenta's graph, loading its TF checkpoint.

    from onss_tui.model import NSynth
    m = NSynth.load(path, device="cpu", precision="fp32", ema=False)
    enc = m.encode(audio)            # [B, T] -> [B, T // 512, 16]
    lp = m.log_probs(audio, enc)     # [B, T, 256]
    out = m.generate(enc, seed=0)    # [B, frames * 512]
"""

from onss_tui.model.checkpoint import BundleReader, CheckpointError, write_bundle
from onss_tui.model.nsynth import PRECISIONS, NSynth

__all__ = ["NSynth", "PRECISIONS", "BundleReader", "CheckpointError", "write_bundle"]
