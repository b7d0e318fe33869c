"""Small builders shared by the pipeline and fault tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from onss_tui.pipeline.plan import Machine


def digests(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.bin"))}


def write_notes(folder: Path, names, pitches, seconds: float = 1.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    for i, n in enumerate(names):
        for p in pitches:
            tone = 0.3 * np.sin(2 * np.pi * (100 + 30 * i + p) * t) * np.exp(-2 * t)
            sf.write(folder / f"{n}_{p}.wav", tone.astype(np.float32), 16000)


def small_recipe(folder: Path, name: str = "small.yaml", **over) -> Path:
    data = {
        "name": "small", "inputs": "audio",
        "corners": {"top_left": ["a"], "top_right": ["b"], "bottom_left": ["c"], "bottom_right": ["d"]},
        "pitches": [60, 64], "resolution": 3, "engine": "preview", "output": "run",
        "generation": {"sample_length": 8192},
    }
    data.update(over)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class RecordingMachine(Machine):
    """A machine with fake GPUs (NVML's view) that runs everything on the CPU and records which
    GPU every use of the model in the supervisor asked for (``devices``). ``fused``: why the fused
    kernels cannot run (None: they can, so ``kernels: auto`` is timed)."""

    devices: list = field(default_factory=list)
    fused: str | None = "the test machine has no fused kernels"

    def device_of(self, gpu: int | None) -> str:
        self.devices.append(gpu)
        return "cpu"

    def worker_device(self, gpu: int | None) -> str:
        return "cpu"

    def why_no_fused_kernels(self, device: str) -> str | None:
        return self.fused


def fake_gpus(count: int = 4) -> RecordingMachine:
    from onss_tui.gpu import fake_probe

    return RecordingMachine(fake_probe(count), cuda=True, cpu_count=2)


async def recipes_listed(pilot, lists: int = 1) -> None:
    """Wait until the recipes screen has shown its list (read on a thread) ``lists`` times."""
    for _ in range(400):
        if getattr(pilot.app.screen, "listed", 0) >= lists:
            break
        await pilot.pause(0.02)
    assert getattr(pilot.app.screen, "listed", 0) >= lists, "the recipes screen listed nothing"
    await pilot.pause()


def load_script(path: Path):
    """A project script (ci/, tools/) imported as a module, without being on the path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
