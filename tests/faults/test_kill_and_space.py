"""Faults: kill -9 of the supervisor and of a worker, disk full, out of GPU memory. Nothing is lost."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onss_tui.pipeline.rundir import STAGES
from tests.helpers import digests, small_recipe, write_notes

pytestmark = pytest.mark.slow
NAMES = ["a", "b", "c", "d", "e"]
CORNERS = {"top_left": ["a", "e"], "top_right": ["b"], "bottom_left": ["c"], "bottom_right": ["d"]}


def onss(*args, limit_bytes: int | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    def preexec():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "onss_tui", *args], capture_output=True, text=True,
                          preexec_fn=preexec, env={**os.environ, **(env or {})}, timeout=600)


def make(folder: Path, **over) -> Path:
    write_notes(folder / "audio", NAMES, [60, 64])
    gen = {"sample_length": 8192, "batch_size": 4}
    gen.update(over.pop("generation", {}))
    return small_recipe(folder, corners=CORNERS, generation=gen, **over)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    recipe = make(folder)
    t0 = time.monotonic()
    assert onss("run", str(recipe), "--json").returncode == 0
    return digests(folder / "run" / "pads"), (folder / "run" / "settings.json").read_bytes(), time.monotonic() - t0


def assert_nothing_partial(run: Path, want: dict[str, str]) -> None:
    for name, digest in digests(run / "pads").items():
        assert digest == want[name], f"{name} is in pads/ but not finished"
    for marker in run.rglob("*.done"):
        target = marker.with_name(marker.name[: -len(".done")])
        if marker.parent == run / "pack" / "done":  # a pad's marker (pads/ holds nothing but pads)
            target = run / "pads" / target.name
        assert target.exists(), f"{marker} marks a file that is not there"


def test_supervisor_killed_at_20_random_moments(tmp_path, reference):
    """Kill i lands in stage i mod 9, a seeded random 0-40 ms after that stage starts, in a run
    that has already survived the earlier kills (a fresh run folder when that stage is done)."""
    want, settings, _ = reference
    recipe = make(tmp_path)
    run = tmp_path / "run"
    rng = np.random.default_rng(20261124)
    stages_hit = []
    for i in range(20):
        target = STAGES[i % len(STAGES)]
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
        if state.get("stages", {}).get(target, {}).get("status") == "done":
            assert digests(run / "pads") == want or state["status"] != "done"
            shutil.rmtree(run)
        p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in p.stdout:
            e = json.loads(line)
            if e["event"] == "stage_start" and e["stage"] == target:
                time.sleep(float(rng.uniform(0, 0.04)))
                p.send_signal(signal.SIGKILL)
                stages_hit.append(target)
                break
        p.stdout.close()
        assert p.wait() == -signal.SIGKILL, f"the run ended before stage {target}"
        assert_nothing_partial(run, want)
    assert onss("run", str(recipe), "--json").returncode == 0
    assert digests(run / "pads") == want
    assert (run / "settings.json").read_bytes() == settings
    assert len(stages_hit) == 20 and set(stages_hit) == set(STAGES)


def _worker_pid(events: Path, since: int) -> int | None:
    if not events.is_file():
        return None
    lines = events.read_text().splitlines()[since:]
    pids = [json.loads(line).get("pid") for line in lines if '"start"' in line]
    return pids[-1] if pids and pids[-1] else None


def test_worker_killed_at_20_random_moments(tmp_path, reference):
    """SIGKILL a generate worker (of two) a seeded random time after it starts; the supervisor
    reports it and exits 2; runs again until done; the pads never differ."""
    want, _, _ = reference
    recipe = make(tmp_path, generation={"gpus": 2, "batch_size": 2})
    run = tmp_path / "run"
    rng = np.random.default_rng(7)
    kills = 0
    for _ in range(80):
        if kills >= 20:
            break
        events = run / "events" / "generate-w1.jsonl"
        seen = len(events.read_text().splitlines()) if events.is_file() else 0
        p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--json"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid = None
        while p.poll() is None and pid is None:
            pid = _worker_pid(events, seen)
            time.sleep(0.005)
        if pid:
            time.sleep(float(rng.uniform(0, 0.3)))
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass  # it had already finished its shards
        code = p.wait(timeout=300)
        if code == 0:
            assert digests(run / "pads") == want
            shutil.rmtree(run)
            continue
        assert code == 2  # the supervisor reports the dead worker and stops cleanly
        state = json.loads((run / "state.json").read_text())
        assert "worker 1 failed" in state["stages"]["generate"]["error"]
        assert_nothing_partial(run, want)
    assert kills == 20
    assert onss("run", str(recipe), "--json").returncode == 0
    assert digests(run / "pads") == want  # batch size and workers do not change the preview's sounds


# sizes (26 sounds, one shard): notes 328 kB < generate 426 kB < clean 509 kB < pack rows 3.1 MB
@pytest.mark.parametrize("stage,limit", [("generate", 400_000), ("clean", 470_000), ("pack", 1_000_000)])
def test_disk_full_names_the_folder_and_resumes(tmp_path, reference, stage, limit):
    """RLIMIT_FSIZE stands in for a full disk: the first file larger than ``limit`` fails to write."""
    want, _, _ = reference
    recipe = make(tmp_path, generation={"batch_size": 30}, clean={"mode": "mp3"})
    r = onss("run", str(recipe), limit_bytes=limit)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    folder = "pads" if stage == "pack" else stage
    assert f"run/{folder}: out of space during {stage}" in r.stderr and "MB" in r.stderr
    assert_nothing_partial(tmp_path / "run", want)
    assert onss("run", str(recipe)).returncode == 0
    assert digests(tmp_path / "run" / "pads") == want


def test_out_of_memory_halves_the_batch(tmp_path, small_model):
    from onss_tui.pipeline.stages.generate import generate_nsynth_shard

    emb = np.random.default_rng(3).normal(0, 5, (4, 1, 16)).astype(np.float32)
    ids = np.arange(10, 14)
    whole = tmp_path / "whole.npy"
    generate_nsynth_shard(small_model, emb, ids, 5, whole, save_every=256)
    halved = []
    os.environ["ONSS_FAULT_OOM_ABOVE"] = "1"
    try:
        out = tmp_path / "oom.npy"
        generate_nsynth_shard(small_model, emb, ids, 5, out, save_every=256, on_oom=halved.append)
    finally:
        del os.environ["ONSS_FAULT_OOM_ABOVE"]
    assert halved == [2, 1, 1]  # 4 -> 2 + 2, each 2 -> 1 + 1
    a, b = np.load(whole), np.load(out)
    assert a.shape == b.shape == (4, 512)
    assert (a == b).mean() > 0.999  # the same sounds; batch size only moves float rounding
    assert not list(tmp_path.glob("*.state*"))

    # out of memory half way: the halves continue from the batch's last save, not from zero
    progress, halved = [], []
    os.environ.update(ONSS_FAULT_OOM_ABOVE="2", ONSS_FAULT_OOM_AFTER="384")
    try:
        late = tmp_path / "late.npy"
        generate_nsynth_shard(small_model, emb, ids, 5, late, save_every=128, on_oom=halved.append,
                              progress=lambda t, total: progress.append(t))
    finally:
        del os.environ["ONSS_FAULT_OOM_ABOVE"], os.environ["ONSS_FAULT_OOM_AFTER"]
    assert halved == [2]
    assert progress == [128, 256, 384, 512, 512]  # samples 0-383 made once, by the whole batch
    c = np.load(late)
    assert np.array_equal(c[:, :384], a[:, :384])  # the batch's own samples, handed down
    assert (a == c).mean() > 0.999
    assert not list(tmp_path.glob("*.state*"))
