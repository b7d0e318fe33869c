"""``onss demo``: a small synthetic instrument set made in code, its recipe, and a full preview run.

Four instruments with distinct timbres (sine, bright saw, plucked string, bell), four pitches each,
4 s at 16 kHz, written as ``<name>_<pitch>.wav``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onss_tui.audio.io import save_wav
from onss_tui.recipe import Recipe, save_recipe

SR = 16000
LENGTH = 64000
PITCHES = [48, 55, 60, 67]
INSTRUMENTS = ["sine", "saw", "pluck", "bell"]


def _hz(midi: int) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def synth(instrument: str, midi: int, length: int = LENGTH) -> np.ndarray:
    t = np.arange(length) / SR
    f = _hz(midi)
    env = np.minimum(t / 0.01, 1.0) * np.exp(-1.5 * t)
    x: np.ndarray
    if instrument == "sine":
        x = np.sin(2 * np.pi * f * t)
    elif instrument == "saw":
        x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, int(6000 / f)))  # type: ignore[assignment]
    elif instrument == "pluck":  # Karplus-Strong from seeded noise
        period = int(round(SR / f))
        buf = np.random.default_rng(midi).uniform(-1, 1, period)
        x = np.empty(length)
        for i in range(length):
            x[i] = buf[i % period]
            buf[i % period] = 0.996 * 0.5 * (buf[i % period] + buf[(i + 1) % period])
        env = np.minimum(t / 0.002, 1.0)
    elif instrument == "bell":
        x = sum(a * np.sin(2 * np.pi * r * f * t) * np.exp(-d * t)  # type: ignore[assignment]
                for a, r, d in [(1, 1, 0.8), (0.6, 2.76, 1.5), (0.4, 5.4, 2.5), (0.25, 8.93, 4)])
    else:
        raise ValueError(instrument)
    x = x * env
    return (0.7 * x / np.abs(x).max()).astype(np.float32)


def make_demo(out: Path) -> Path:
    """Write the demo's notes and recipe under ``out``; return the recipe path."""
    audio = out / "audio"
    for inst in INSTRUMENTS:
        for p in PITCHES:
            f = audio / f"{inst}_{p}.wav"
            if not f.is_file():
                save_wav(f, synth(inst, p))
    recipe = Recipe.model_validate({
        "name": "demo",
        "inputs": "../audio",
        "corners": {"top_left": ["sine"], "top_right": ["saw"], "bottom_left": ["pluck"], "bottom_right": ["bell"]},
        "pitches": PITCHES,
        "resolution": 9,
        "engine": "preview",
        "device": {"data_directory": "/home/pi/demo"},
        "output": "../run",
    })
    return save_recipe(recipe, out / "recipes" / "demo.yaml").resolve()
