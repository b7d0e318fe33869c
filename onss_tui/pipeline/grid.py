"""The interpolation grid of Open NSynth Super, exactly as the original step 02 computes it (spec §3.2).

Corners are indexed 0..3 = top-left (0,0), top-right (1,0), bottom-left (0,1), bottom-right (1,1):
the original's settings keys NW, NE, SE, SW in that order. x runs left to right, y top to bottom.

    weights(x, y):  w_i = max(1 - |(x, y) - corner_i|, 0), then normalised to sum 1 (not bilinear)

Every (combination, pitch, grid point) has a description: its pitch plus each instrument whose
unrounded weight is > 0, with the weight rounded to 3 decimals. Sounds with equal descriptions are
generated once (global de-duplication), named by the sorted ``key_value`` pairs, e.g.
``brass_0.75_fatpoly_0.25_pitch_24``; the first triple met decides the embedding (they are equal).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onss_tui.vocab import ROW_LENGTH

CORNER_POSITIONS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))  # TL, TR, BL, BR
CORNER_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right")

__all__ = [
    "CORNER_NAMES",
    "GridPoint",
    "Sound",
    "SoundPlan",
    "grid_points",
    "corner_weights",
    "description_name",
    "combinations",
    "plan_sounds",
]


@dataclass(frozen=True)
class GridPoint:
    xi: int
    yi: int
    x: float
    y: float


def grid_points(resolution: int) -> list[GridPoint]:
    """R x R points, row-major with x fastest: point k = (lin[k % R], lin[k // R])."""
    lin = np.linspace(0.0, 1.0, resolution)
    return [GridPoint(xi, yi, float(lin[xi]), float(lin[yi])) for yi in range(resolution) for xi in range(resolution)]


def corner_weights(x: float, y: float) -> np.ndarray:
    """float64 [4]: the normalised linear-falloff weights of the four corners at (x, y).

    Bit for bit the original's ``utils.get_weights``: the distances by ``np.linalg.norm`` (the square
    root of the summed squares; ``np.hypot`` differs from it in the last bit at some points)."""
    w = np.maximum(1 - np.linalg.norm(np.array([x, y]) - np.array(CORNER_POSITIONS), axis=1), 0)
    w /= w.sum()
    return w


def description_name(pitch: int, weights: dict[str, float]) -> str:
    """``key_value`` pairs in sorted key order (``pitch`` sorts in among the names), joined by ``_``."""
    items = {"pitch": str(int(pitch))}
    for name, w in weights.items():
        items[name] = str(np.float64(w))
    return "_".join(f"{k}_{items[k]}" for k in sorted(items))


def combinations(corners: Sequence[Sequence[str]]) -> list[tuple[str, str, str, str]]:
    """Every 4-tuple (TL, TR, BL, BR), sorted as the original sorts them."""
    if len(corners) != 4:
        raise ValueError("exactly four corners are needed")
    return sorted(itertools.product(*corners))  # type: ignore[arg-type]  # four corners: 4-tuples


@dataclass(frozen=True)
class Sound:
    """One unique sound to generate: a pitch and a weighted mix of corner instruments."""

    index: int
    name: str
    pitch: int
    mix: tuple[tuple[str, float], ...]  # (instrument, unrounded weight), weight > 0, corner order


@dataclass
class SoundPlan:
    """The unique sounds, and for each pad file the sound index of every row."""

    resolution: int
    pitches: tuple[int, ...]
    sounds: list[Sound]
    pads: dict[tuple[str, str, str, str], np.ndarray]  # combination -> int32 [R*R*P], row order

    @property
    def rows_per_pad(self) -> int:
        return self.resolution * self.resolution * len(self.pitches)


def plan_sounds(corners: Sequence[Sequence[str]], pitches: Sequence[int], resolution: int) -> SoundPlan:
    """Unique sounds in first-met order (sorted combination, then pitch, then grid point) and the
    row -> sound table of every pad. Pad rows are ``(yi * R + xi) * P + pi`` (spec §3.6.3)."""
    names = [n for corner in corners for n in corner]
    if len(set(names)) != len(names):
        raise ValueError("an instrument appears in more than one corner")
    points = grid_points(resolution)
    weights = [corner_weights(p.x, p.y) for p in points]
    npitch = len(pitches)
    seen: dict[tuple, int] = {}
    sounds: list[Sound] = []
    pads: dict[tuple[str, str, str, str], np.ndarray] = {}
    for comb in combinations(corners):
        rows = np.empty(resolution * resolution * npitch, dtype=np.int32)
        for pi, pitch in enumerate(pitches):
            for p, w in zip(points, weights, strict=True):
                used = [(comb[i], float(w[i])) for i in range(4) if w[i] > 0]
                key = (int(pitch), frozenset((n, round(wi, 3)) for n, wi in used))
                index = seen.get(key)
                if index is None:
                    index = len(sounds)
                    seen[key] = index
                    rounded = {n: round(wi, 3) for n, wi in used}
                    sounds.append(Sound(index, description_name(pitch, rounded), int(pitch), tuple(used)))
                rows[(p.yi * resolution + p.xi) * npitch + pi] = index
        pads[comb] = rows
    return SoundPlan(resolution, tuple(int(p) for p in pitches), sounds, pads)


def stage_bytes(sounds: int, instruments: int, pitches: int, resolution: int, pads: int,
                sample_length: int = 64000) -> dict[str, int]:
    """Bytes each stage writes into the run folder (for space checks and messages): float32 notes
    after prepare, 16-bit audio after generate and clean, 60,000-sample rows in the pads."""
    rows = resolution ** 2 * pitches
    return {
        "prepare": instruments * pitches * sample_length * 4,
        "generate": sounds * sample_length * 2,
        "clean": sounds * (sample_length + 2048) * 2,
        "pack": sounds * ROW_LENGTH * 2 + pads * rows * ROW_LENGTH * 2,
    }
