"""Stage prepare: every (instrument, pitch) note the recipe needs, read, 16 kHz mono, fixed length.

reads   the recipe's ``inputs`` folder (rules and messages: :mod:`onss_tui.pipeline.prepare`)
writes  ``prepare/notes.npy`` float32 [n_notes, sample_length] and ``prepare/notes.json`` (the
        (instrument, pitch) of each row, its source file, the warnings)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from onss_tui.atomic import atomic_save_npy, atomic_write_text
from onss_tui.pipeline.context import StageContext
from onss_tui.pipeline.prepare import read_notes
from onss_tui.recipe import Recipe

__all__ = ["run", "prepare", "load_notes"]


def prepare(recipe: Recipe, inputs: Path, out_dir: Path) -> list[str]:
    """Read every note the recipe needs into ``out_dir``; returns the warnings, raises PrepareError."""
    keys, audio, scan, warnings = read_notes(recipe, inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out_dir / "notes.npy", np.stack([audio[k] for k in keys]).astype(np.float32))
    manifest = {
        "notes": [{"instrument": n, "pitch": p, "file": str(scan.notes[(n, p)].path)} for n, p in keys],
        "sample_length": recipe.generation.sample_length,
        "warnings": warnings,
    }
    atomic_write_text(out_dir / "notes.json", json.dumps(manifest, indent=2))
    return warnings


def load_notes(out_dir: Path) -> tuple[dict[tuple[str, int], int], np.ndarray]:
    """(index of each (instrument, pitch), audio [n, sample_length]) from a finished prepare stage."""
    manifest = json.loads((out_dir / "notes.json").read_text())
    index = {(n["instrument"], n["pitch"]): i for i, n in enumerate(manifest["notes"])}
    return index, np.load(out_dir / "notes.npy", mmap_mode="r")


def run(ctx: StageContext) -> dict:
    warnings = prepare(ctx.recipe, Path(ctx.recipe.inputs), ctx.stage_dir("prepare"))
    for w in warnings:
        ctx.emit("prepare", "warning", message=w)
    return {"warnings": len(warnings)}
