"""Measured generation speed per device, and the projected time of a run.

Projections come only from measurements: ``onss bench`` writes its result for the device it ran on
into ``<data dir>/bench/<device>.json``; :func:`rate` reads the best samples/s measured there for a
device name and precision, at a batch the run can fill. Where this machine has not measured a
device, onss's own measurements of that GPU model (``reference_bench.json``, dated, the table in
docs/benchmarks.md) stand in, and the projection says so. A device nobody measured has no rate,
and its projection is "unknown": a guess from a datasheet would be a promise nobody measured.

Device names are the ones NVML and torch both report for a GPU ("NVIDIA H100 80GB HBM3"), so the
wizard's NVML probe finds what a benchmark stored through torch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from onss_tui.atomic import atomic_write_text

__all__ = ["bench_dir", "save_result", "load_results", "reference_results", "rate", "Projection", "project",
           "cpu_name", "human_time", "PreviewCost", "preview_cost", "preview_projection"]

PRECISION_ORDER = ("bf16", "tf32", "fp32")  # what "auto" prefers, fastest first


def bench_dir() -> Path:
    from onss_tui.paths import data_dir

    return data_dir() / "bench"


def _slug(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", device).strip("-") or "device"


def save_result(result: dict, folder: Path | None = None) -> Path:
    """Store one benchmark result (``{"device": ..., "runs": [{"precision", "batch", "samples_per_s"}]}``)."""
    path = (folder or bench_dir()) / f"{_slug(result['device'])}.json"
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return path


def load_results(folder: Path | None = None) -> list[dict]:
    """Every stored result; unreadable files are skipped (a benchmark is advice, never a failure)."""
    folder = folder or bench_dir()
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if _is_result(data):
            out.append(data)
    return out


def reference_results() -> list[dict]:
    """onss's own measurements of GPU models (shipped with the package); [] if the file is unreadable."""
    try:
        data = json.loads((Path(__file__).with_name("reference_bench.json")).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in data if _is_result(r)] if isinstance(data, list) else []


def _is_result(data) -> bool:
    """Whether ``data`` has the shape of a benchmark result (a device name and a list of runs)."""
    return isinstance(data, dict) and isinstance(data.get("device"), str) and isinstance(data.get("runs"), list)


def rate(device: str, precision: str = "auto", results: list[dict] | None = None,
         voices: int | None = None) -> tuple[float, str] | None:
    """The best measured samples/s (summed over the batch) on ``device``, and the precision it was
    measured at; None when this device was never measured at that precision. ``voices``: how many
    notes the device can generate at once in the run (its share of the sounds): batches larger
    than that do not count, and below the smallest batch measured the rate scales with the voices."""
    results = load_results() if results is None else results
    wanted = PRECISION_ORDER if precision == "auto" else (precision,)
    for p in wanted:
        runs = [(int(r.get("batch") or 1), float(r["samples_per_s"])) for res in results if res["device"] == device
                for r in res["runs"] if r.get("precision") == p and isinstance(r.get("samples_per_s"), (int, float))]
        if not runs:
            continue
        if voices is None:
            return max(v for _, v in runs), p
        fits = [v for b, v in runs if b <= voices]
        if fits:
            return max(fits), p
        batch, value = min(runs)
        return value * voices / batch, p
    return None


@dataclass(frozen=True)
class Projection:
    seconds: float | None  # None: some device has no measurement
    text: str


def project(sounds: int, sample_length: int, devices: list[str], precision: str = "auto",
            results: list[dict] | None = None, references: list[dict] | None = None) -> Projection:
    """Wall time to generate ``sounds`` notes of ``sample_length`` samples on these devices (one
    worker per device, shards balanced by sound count, so the devices' rates add up). A device
    this machine never measured takes its rate from ``references`` (default: onss's own
    measurements), and the text says whose measurement it is."""
    if not devices:
        return Projection(None, "unknown (no device)")
    results = load_results() if results is None else results
    references = reference_results() if references is None else references
    voices = max(1, -(-sounds // len(devices)))  # each device's share: its largest possible batch
    rates, borrowed = [], set()
    for d in devices:
        r = rate(d, precision, results, voices)
        if r is None:
            r = rate(d, precision, references, voices)
            if r is not None:
                borrowed.add(d)
        rates.append(r)
    missing = sorted({d for d, r in zip(devices, rates, strict=True) if r is None})
    if missing:
        return Projection(None, f"unknown: {', '.join(missing)} not measured yet (run `onss bench` on this machine)")
    known = [r for r in rates if r is not None]
    total = sum(r for r, _ in known)
    seconds = sounds * sample_length / total
    used = "/".join(sorted({p for _, p in known}))
    where = f"{len(devices)} x {devices[0]}" if len(set(devices)) == 1 else f"{len(devices)} devices"
    if borrowed:
        dates = sorted({res.get("date", "?") for res in references if res["device"] in borrowed})
        return Projection(seconds, f"about {human_time(seconds)} on {where} ({used}, from onss's measurement of "
                                   f"this GPU model on {', '.join(dates)}; `onss bench` measures yours)")
    return Projection(seconds, f"about {human_time(seconds)} on {where} ({used}, measured)")


@dataclass(frozen=True)
class PreviewCost:
    """What one sound costs the preview engine's run on this CPU, measured (seconds)."""

    morph: float  # the generate stage: one sound morphed from four notes
    clean: float  # the clean stage: one sound de-clicked, normalised and through its clean mode


_preview_costs: dict[tuple[int, str], PreviewCost] = {}


def preview_cost(sample_length: int = 64000, clean_mode: str = "mp3", repeats: int = 3) -> PreviewCost:
    """Time the preview engine and the clean stage on one synthetic sound (a fraction of a second;
    kept for the process). The fastest of ``repeats`` is taken: what the machine does unloaded."""
    import time

    import numpy as np

    from onss_tui.pipeline.clean import clean_sound, mp3_unavailable
    from onss_tui.pipeline.preview import morph

    key = (sample_length, clean_mode)
    if key in _preview_costs:
        return _preview_costs[key]
    rng = np.random.default_rng(0)
    notes = [(0.3 * rng.standard_normal(sample_length)).astype(np.float32) for _ in range(4)]
    weights = [0.4, 0.3, 0.2, 0.1]
    mode = "lowpass" if clean_mode == "mp3" and mp3_unavailable() else clean_mode
    morphs, cleans = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sound = morph(notes, weights)
        t1 = time.perf_counter()
        clean_sound(np.clip(sound * 32767, -32768, 32767).astype(np.int16), mode, -12.0)
        cleans.append(time.perf_counter() - t1)
        morphs.append(t1 - t0)
    cost = PreviewCost(min(morphs), min(cleans))
    _preview_costs[key] = cost
    return cost


PREVIEW_START_S = 3.0  # a run's fixed part: the stages' start, the worker and the pools (the demo: ~3 s)


def preview_projection(sounds: int, cost: PreviewCost, cpu_workers: int | None = None) -> Projection:
    """The preview engine's run time from :func:`preview_cost`: one worker morphs, the clean stage
    uses every core."""
    workers = max(1, cpu_workers or os.cpu_count() or 1)
    seconds = PREVIEW_START_S + sounds * cost.morph + sounds * cost.clean / workers
    return Projection(seconds, f"about {human_time(seconds)} on this CPU (preview engine; measured here: "
                               f"{cost.morph * 1e3:.0f} ms a sound to morph, {cost.clean * 1e3:.0f} ms to clean)")


def cpu_name() -> str:
    """How benchmarks name this machine's CPU (the wizard looks its rate up under the same name)."""
    import platform

    return f"CPU {platform.machine()} x{os.cpu_count()}"


def human_time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
