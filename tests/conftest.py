"""Shared fixtures: the golden reference (read in place from ../shared/golden) and its weights."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _cores() -> int:
    """The cores this process may run on: its CPU affinity, within a cgroup's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores


# numpy's OpenBLAS threads and torch's OpenMP threads, each as many as the cores, take turns
# spinning on a small machine: Triton's interpreter multiplies its tiles with numpy, and on the
# 2-core CI machine each of those products took 100 times as long (16 ms, not 0.15). Before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# under pytest-xdist (CI runs a worker per core) each worker, and every process a test starts,
# computes on its share of the cores: more threads than cores only take turns spinning
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // _WORKERS)))

import numpy as np
import pytest
import torch

if _WORKERS > 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if not torch.cuda.is_available():  # the fused Triton kernels run in Triton's CPU interpreter here
    os.environ.setdefault("TRITON_INTERPRET", "1")

from onss_tui.model.golden import golden_variables as load_golden_variables
from tests.slurm import slurm  # noqa: F401  (the real Slurm cluster fixture: tests/slurm.py)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("ONSS_GOLDEN") or ROOT.parent / "shared" / "golden")  # ONSS_GOLDEN: on a GPU box


def need_golden() -> Path:
    if not (GOLDEN / "nsynth_reference.npz").is_file():
        pytest.skip(f"golden reference data not found at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return need_golden()


@pytest.fixture(scope="session")
def golden_spec(golden_dir) -> dict:
    return json.loads((golden_dir / "variables.json").read_text())


@pytest.fixture(scope="session")
def golden_variables(golden_dir) -> dict[str, np.ndarray]:
    return load_golden_variables(golden_dir)


@pytest.fixture(scope="session")
def reference(golden_dir):
    with np.load(golden_dir / "nsynth_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def golden_model(golden_variables):
    from onss_tui.model import NSynth

    return NSynth.from_tf_variables(golden_variables, device="cpu", precision="fp32")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, tmp_path, monkeypatch):
    """Keep caches and installed models of tests out of the user's folders (a fresh data folder
    for each test; one weight cache for the session)."""
    monkeypatch.setenv("ONSS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("ONSS_DATA_DIR", str(tmp_path / "data"))
    # the registry of runs: beside the test's folder, not in it (tests compare what a folder holds)
    monkeypatch.setenv("ONSS_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory, golden_variables) -> Path:
    """The golden weights written as a TF V2 checkpoint (raw weights, EMA shadows at half value,
    and some training state), in the layout of the published wavenet-ckpt."""
    from onss_tui.model.checkpoint import write_bundle

    folder = tmp_path_factory.mktemp("ckpt") / "wavenet-ckpt"
    tensors = dict(golden_variables)
    for name, value in golden_variables.items():
        tensors[name + "/ExponentialMovingAverage"] = value * np.float32(0.5)
    tensors["global_step"] = np.array(200000, dtype=np.int64)
    tensors["beta1_power"] = np.array(0.5, dtype=np.float32)
    return write_bundle(folder / "model.ckpt-200000", tensors)


@pytest.fixture(scope="session")
def small_model():
    """An NSynth whose decoder has 4 layers (dilations 1 to 8) of seeded random weights: the
    engine's own code paths (batches, saves, resume) at a sixth of the full model's cost a step,
    for tests that do not need the published numbers."""
    from onss_tui.model import NSynth
    from onss_tui.model.decoder import Decoder

    torch.manual_seed(0)
    model = NSynth(precision="fp32")
    model.decoder = Decoder(layers=4).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)  # livelier than the default initialisation: many classes get drawn
    model.source = "4 random layers (tests)"
    return model


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, which a GPU box may not have
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: a worker per usable core, but no more than one per 3 GB of memory (a worker
    holds the golden model and its fixtures) and no more than 8."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(_cores(), memory // (3 << 30), 8))


def pytest_collection_modifyitems(config, items):
    """The long tests first (marked slow; order otherwise kept): with a worker per core (CI runs
    pytest-xdist), the longest test starts at once instead of being the last one left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

