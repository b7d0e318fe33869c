"""Checkpoint variables <-> PyTorch parameters, and a fast converted cache of the weights.

Every layer of the checkpoint is ``<layer>/W`` of shape [1, K, Cin, Cout] (TF conv2d HWIO) plus
``<layer>/biases`` [Cout]. A torch Conv1d weight is [Cout, Cin, K], so ``W[0].permute(2, 1, 0)``,
with no tap flip: both count taps from the earliest time (spec §2.1, §3.6).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onss_tui.atomic import atomic_write
from onss_tui.model.checkpoint import BundleReader, CheckpointError

EMA_SUFFIX = "/ExponentialMovingAverage"
CACHE_VERSION = 1

__all__ = ["variable_shapes", "load_tf_variables", "read_checkpoint_variables", "EMA_SUFFIX"]


def tf_shape(conv: nn.Conv1d) -> tuple[int, int, int, int]:
    cout, cin, k = conv.weight.shape
    return (1, k, cin, cout)


def variable_shapes(layers: Mapping[str, nn.Conv1d]) -> dict[str, tuple[int, ...]]:
    """The checkpoint variables these layers need, with their shapes."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, conv in layers.items():
        shapes[f"{name}/W"] = tf_shape(conv)
        shapes[f"{name}/biases"] = (conv.out_channels,)
    return shapes


def load_tf_variables(layers: Mapping[str, nn.Conv1d], variables: Mapping[str, np.ndarray],
                      source: str = "the variables") -> None:
    """Copy checkpoint-named arrays into the layers; every problem is reported at once."""
    missing, wrong = [], []
    for name, shape in variable_shapes(layers).items():
        if name not in variables:
            missing.append(name)
        elif tuple(np.shape(variables[name])) != shape:
            wrong.append(f"{name} is {list(np.shape(variables[name]))}, expected {list(shape)}")
    if missing or wrong:
        parts = []
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            parts.append(f"missing variable{'s' if len(missing) > 1 else ''} {shown}")
        if wrong:
            more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
            parts.append("wrong shape: " + "; ".join(wrong[:5]) + more)
        raise CheckpointError(
            f"{source}: not the NSynth wavenet-ckpt model ({'; '.join(parts)}). "
            "Use the published checkpoint: onss model download"
        )
    with torch.no_grad():
        for name, conv in layers.items():
            w = torch.from_numpy(np.asarray(variables[f"{name}/W"], dtype=np.float32))
            conv.weight.copy_(w[0].permute(2, 1, 0))
            assert conv.bias is not None  # every NSynth convolution has one
            conv.bias.copy_(torch.from_numpy(np.asarray(variables[f"{name}/biases"], dtype=np.float32)))


# --------------------------------------------------------------------------------------------
# Reading a checkpoint, through a cache


def _cache_dir() -> Path:
    env = os.environ.get("ONSS_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("onss")) / "weights"


def _cache_key(reader: BundleReader, names: list[str], ema: bool) -> str:
    """Identity of the source: the index bytes (which hold every tensor's CRC), the data files'
    sizes and modification times, and which variables were asked for."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION} ema={ema}\n".encode())
    h.update(reader.index_path.read_bytes())
    for p in reader.data_files():
        st = p.stat()
        h.update(f"{p.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    h.update("\n".join(names).encode())
    return h.hexdigest()[:32]


def read_checkpoint_variables(
    path: str | os.PathLike, names: list[str], ema: bool = False, cache: bool = True
) -> tuple[dict[str, np.ndarray], Path]:
    """Read the named model variables (raw, or their EMA shadows) from a checkpoint.

    Returns (arrays keyed by the plain variable names, checkpoint prefix). The converted arrays are
    cached as safetensors keyed by the source's identity, so a second load skips the CRC pass over
    the data file and a changed checkpoint is never served stale.
    """
    from safetensors.numpy import load_file, save_file

    reader = BundleReader(path)
    key = _cache_key(reader, names, ema) if cache else ""
    cache_file = _cache_dir() / f"{reader.prefix.name}-{key}.safetensors" if cache else None
    if cache_file is not None and cache_file.is_file():
        try:
            arrays = load_file(str(cache_file))
            if set(arrays) == set(names):
                return arrays, reader.prefix
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    wanted = {n: n + EMA_SUFFIX if ema else n for n in names}
    absent = [src for src in wanted.values() if src not in reader]
    if absent:
        what = "EMA shadow" if ema else "variable"
        raise CheckpointError(
            f"{reader.index_path}: missing {what}{'s' if len(absent) > 1 else ''} {', '.join(absent[:5])}"
            f"{f' and {len(absent) - 5} more' if len(absent) > 5 else ''}; this is not the NSynth "
            "wavenet-ckpt. Use the published checkpoint: onss model download"
        )
    raw = reader.read_many(wanted.values())
    arrays = {n: np.ascontiguousarray(raw[src], dtype=np.float32) for n, src in wanted.items()}
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            for stale in cache_file.parent.glob(f"{reader.prefix.name}-*.safetensors"):
                meta = stale.with_suffix(".json")
                if meta.is_file() and json.loads(meta.read_text()).get("index") == str(reader.index_path):
                    stale.unlink(missing_ok=True)
                    meta.unlink(missing_ok=True)
            tmp = cache_file.with_name(cache_file.name + ".tmp")
            save_file(arrays, str(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, cache_file)
            with atomic_write(cache_file.with_suffix(".json"), "w") as f:
                json.dump({"index": str(reader.index_path), "ema": ema, "tensors": len(arrays)}, f)
        except OSError:
            pass  # a cache that cannot be written only costs speed
    return arrays, reader.prefix
