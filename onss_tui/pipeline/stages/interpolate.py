"""Stage interpolate: the unique sounds of the grid (spec §3.2) and, for an engine that uses them,
their embeddings: z = sum_i w_i E_i with the unrounded weights (float64 products and sum, stored
float32: bit for bit the original's).

reads   the recipe's corners, pitches and resolution; ``embed/encodings.npy``
writes  ``interpolate/sounds.json`` (SoundList), ``interpolate/pads.json`` (PadRows) and
        ``interpolate/embeddings.npy`` float32 [n_sounds, frames, 16]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from onss_tui.atomic import atomic_save_npy, atomic_write_text
from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.files import SOUNDS, Sound
from onss_tui.pipeline.grid import SoundPlan, plan_sounds
from onss_tui.pipeline.stages.prepare import load_notes
from onss_tui.recipe import Recipe

__all__ = ["run", "interpolate"]


def interpolate(recipe: Recipe, out_dir: Path, note_index: dict[tuple[str, int], int] | None = None,
                encodings: np.ndarray | None = None) -> SoundPlan:
    """Write the sound list (and the interpolated embeddings when encodings are given)."""
    grid = plan_sounds(recipe.corners.names(), recipe.pitches, recipe.resolution)
    out_dir.mkdir(parents=True, exist_ok=True)
    if encodings is not None:
        assert note_index is not None
        z = np.empty((len(grid.sounds), encodings.shape[1], encodings.shape[2]), dtype=np.float32)
        for s in grid.sounds:
            # as the original: (embeddings.T * weights).T.sum(axis=0), then float32. Its float64 weight
            # array makes every product float64 (a Python float times a float32 array would round each
            # product to float32 first); the sum runs in corner order from 0.0, and the zero-weight
            # corners it also adds (+-0.0) change no bit of it, so they are left out here.
            acc = np.zeros(encodings.shape[1:], dtype=np.float64)
            for inst, w in s.mix:
                acc += np.float64(w) * encodings[note_index[(inst, s.pitch)]].astype(np.float64)
            z[s.index] = acc.astype(np.float32)
        atomic_save_npy(out_dir / "embeddings.npy", z)
    sounds = [Sound(index=s.index, name=s.name, pitch=s.pitch, mix=list(s.mix)) for s in grid.sounds]
    pads = {"_".join(c): rows.tolist() for c, rows in grid.pads.items()}
    atomic_write_text(out_dir / "pads.json", json.dumps(pads))
    atomic_write_text(out_dir / "sounds.json", SOUNDS.dump_json(sounds).decode())
    return grid


def run(ctx: StageContext) -> dict:
    index, _ = load_notes(ctx.stage_dir("prepare"))
    enc = None
    if ctx.engine().uses_embeddings:
        enc = np.load(ctx.stage_dir("embed") / "encodings.npy")
    grid = interpolate(ctx.recipe, ctx.stage_dir("interpolate"), index, enc)
    if len(grid.sounds) != ctx.plan.sounds:
        raise RuntimeError(f"the grid has {len(grid.sounds)} sounds, the plan {ctx.plan.sounds}")
    return {"sounds": len(grid.sounds), "pads": len(grid.pads)}
