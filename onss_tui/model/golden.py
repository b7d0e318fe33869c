"""The golden reference's weights (``../shared/golden``): a seeded recipe, so no weight file ships.

The recipe (the golden README): for every variable, a NumPy generator seeded with
``[seed, crc32(name)]``; convolution kernels ``W`` [1, K, Cin, Cout] are standard normal over
sqrt(K * Cin), biases are standard normal times 0.1. Tests and the benchmark's fidelity table use it.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

__all__ = ["golden_weight", "golden_variables", "golden_reference"]


def golden_weight(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if name.endswith("/W"):  # shape [1, K, Cin, Cout]
        k, cin = shape[1], shape[2]
        return (rng.standard_normal(shape) / np.sqrt(k * cin)).astype(np.float32)
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)  # "/biases"


def golden_variables(golden_dir: Path) -> dict[str, np.ndarray]:
    spec = json.loads((Path(golden_dir) / "variables.json").read_text())
    return {name: golden_weight(name, tuple(shape), spec["seed"]) for name, shape in spec["variables"].items()}


def golden_reference(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(Path(golden_dir) / "nsynth_reference.npz") as z:
        return {k: z[k] for k in z.files}
