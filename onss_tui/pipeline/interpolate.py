"""Stages embed, interpolate and plan.

embed:        the encoder over every prepared note -> ``embed/encodings.npy`` [n_notes, frames, 16]
interpolate:  the unique sounds of the grid (spec §3.2) -> ``interpolate/sounds.json`` and, for the
              nsynth engine, their embeddings ``interpolate/embeddings.npy`` [n_sounds, frames, 16]:
              z = sum_i w_i E_i with the unrounded weights (float64 sum, stored float32)
plan:         shards of consecutive sounds (one generation batch each), balanced over workers
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from onss_tui.atomic import atomic_save_npy, atomic_write_text
from onss_tui.pipeline.grid import SoundPlan, plan_sounds
from onss_tui.recipe import Recipe

__all__ = ["embed", "interpolate", "load_sounds", "make_shards", "load_shards"]


def embed(model, notes: np.ndarray, out: Path, batch: int = 8, progress: Callable[[int, int], None] | None = None) -> None:
    """Encode notes [n, T] in batches; write float32 [n, T // 512, 16] atomically."""
    parts = []
    for start in range(0, len(notes), batch):
        parts.append(model.encode(np.asarray(notes[start : start + batch])))
        if progress:
            progress(min(start + batch, len(notes)), len(notes))
    atomic_save_npy(out, np.concatenate(parts).astype(np.float32))


def _plan(recipe: Recipe) -> SoundPlan:
    return plan_sounds(recipe.corners.names(), recipe.pitches, recipe.resolution)


def interpolate(recipe: Recipe, out_dir: Path, note_index: dict[tuple[str, int], int] | None = None,
                encodings: np.ndarray | None = None) -> SoundPlan:
    """Write the sound list (and the interpolated embeddings when encodings are given)."""
    plan = _plan(recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    if encodings is not None:
        assert note_index is not None
        z = np.empty((len(plan.sounds), encodings.shape[1], encodings.shape[2]), dtype=np.float32)
        for s in plan.sounds:
            acc = np.zeros(encodings.shape[1:], dtype=np.float64)
            for inst, w in s.mix:
                acc += w * encodings[note_index[(inst, s.pitch)]]
            z[s.index] = acc
        atomic_save_npy(out_dir / "embeddings.npy", z)
    sounds = [{"index": s.index, "name": s.name, "pitch": s.pitch, "mix": [list(m) for m in s.mix]} for s in plan.sounds]
    pads = {"_".join(c): rows.tolist() for c, rows in plan.pads.items()}
    atomic_write_text(out_dir / "pads.json", json.dumps(pads))
    atomic_write_text(out_dir / "sounds.json", json.dumps(sounds))
    return plan


def load_sounds(out_dir: Path) -> list[dict]:
    return json.loads((out_dir / "sounds.json").read_text())


def load_pad_rows(out_dir: Path) -> dict[str, list[int]]:
    return json.loads((out_dir / "pads.json").read_text())


def make_shards(n_sounds: int, shard_size: int, workers: int, out: Path) -> list[dict]:
    """Consecutive sound ranges of at most ``shard_size``, balanced by sound count: the number of
    shards is a multiple of the workers, their sizes differ by at most one sound, and worker w
    takes shards w, w+W, ... So every GPU gets the same work (118,016 sounds in batches of 4096 on
    8 GPUs: 32 shards of 3,688, four a GPU, not 29 shards with five GPUs doing four and three doing
    three)."""
    workers = max(workers, 1)
    count = max(1, -(-n_sounds // shard_size))
    count = min(-(-count // workers) * workers, max(n_sounds, 1))  # (never an empty shard)
    base, extra = divmod(n_sounds, count)
    shards, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        if stop > start:
            shards.append({"id": len(shards), "start": start, "stop": stop, "worker": len(shards) % workers})
        start = stop
    atomic_write_text(out, json.dumps({"shard_size": shard_size, "workers": workers, "shards": shards}, indent=1))
    return shards


def load_shards(out: Path) -> list[dict]:
    return json.loads(out.read_text())["shards"]
