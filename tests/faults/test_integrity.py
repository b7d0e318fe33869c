"""Faults in what a run trusts: ctrl+c and SIGTERM at any moment, outputs deleted or damaged after
they were certified, an input note replaced, a run folder holding the user's files, a disk that
fills up (a real tmpfs). Each ends in byte-identical pads (or the new notes' pads), a message that
says what was redone and why, or a clean refusal; nothing of the user's is touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from onss_tui.pipeline.rundir import STAGES
from tests.helpers import digests, small_recipe, write_notes

pytestmark = pytest.mark.slow
NAMES = ["a", "b", "c", "d", "e"]
CORNERS = {"top_left": ["a", "e"], "top_right": ["b"], "bottom_left": ["c"], "bottom_right": ["d"]}


def make(folder: Path, **over) -> Path:
    write_notes(folder / "audio", NAMES, [60, 64])
    gen = {"sample_length": 8192, "batch_size": 4}
    gen.update(over.pop("generation", {}))
    return small_recipe(folder, corners=CORNERS, generation=gen, clean={"mode": "mp3"}, **over)


def onss(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], capture_output=True, text=True, timeout=600,
                          **kw)


def start(recipe: Path) -> subprocess.Popen:
    """``onss run`` in a process group of its own, as a terminal's foreground job is."""
    return subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--json", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    recipe = make(folder)
    r = onss("run", str(recipe), "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return digests(folder / "run" / "pads"), (folder / "run" / "settings.json").read_bytes()


def assert_certified(run: Path) -> None:
    """Every done marker certifies its file as it is (size and checksum)."""
    from onss_tui.pipeline.rundir import RunDir

    for marker in run.rglob("*.done"):
        target = marker.with_name(marker.name[: -len(".done")])
        if marker.parent == run / "pack" / "done":
            target = run / "pads" / target.name
        assert RunDir.is_done(target, marker), f"{marker} certifies {target}, which does not match it"


def _stage_started(run: Path, stage: str, since: int) -> bool:
    try:
        lines = (run / "events" / "supervisor.jsonl").read_text().splitlines()[since:]
    except OSError:
        return False
    return any(f'"stage_start", "stage": "{stage}"' in line for line in lines)


def test_signals_at_random_moments_of_every_stage_end_byte_identical(tmp_path, reference):
    """30 trials: SIGINT to the process group (ctrl+c in a terminal: the pool's workers get it too),
    SIGTERM to the supervisor (``kill``, a batch system) or SIGKILL, each a seeded random 0-60 ms
    after a stage starts (stage i mod 9), in a run that has survived the earlier ones (a fresh
    folder when that stage is already done). ctrl+c and SIGTERM end cleanly (status 130 / 143, no
    traceback); every marker left certifies its file; the resumed run's pads are the reference's."""
    want, settings = reference
    rng = np.random.default_rng(14)
    folder, recipe = tmp_path / "t0", make(tmp_path / "t0")
    sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    landed = {s: 0 for s in sigs}
    for trial in range(30):
        stage, sig = STAGES[trial % len(STAGES)], sigs[trial % 3]
        state = folder / "run" / "state.json"
        if state.is_file() and json.loads(state.read_text())["stages"].get(stage, {}).get("status") == "done":
            folder = tmp_path / f"t{trial}"
            recipe = make(folder)
        events = folder / "run" / "events" / "supervisor.jsonl"
        since = len(events.read_text().splitlines()) if events.is_file() else 0
        p = start(recipe)
        deadline = time.monotonic() + 120
        while p.poll() is None and not _stage_started(folder / "run", stage, since) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.06))
        if p.poll() is None:
            if sig == signal.SIGINT:
                os.killpg(p.pid, signal.SIGINT)
            else:
                os.kill(p.pid, sig)
            landed[sig] += 1
        out, err = p.communicate(timeout=120)
        assert "Traceback" not in err, f"trial {trial} ({sig.name} in {stage}):\n{err}"
        finished = json.loads((folder / "run" / "state.json").read_text()).get("status") == "done"
        if sig != signal.SIGKILL and p.returncode == -sig:  # only once the run was over
            assert finished, f"trial {trial}: {sig.name} killed a run in {stage} without its clean stop\n{err}"
        elif p.returncode not in (0, -signal.SIGKILL):
            assert p.returncode == 128 + sig, f"trial {trial}: exit {p.returncode}\n{err}"
            assert "interrupted" in err and "again to resume" in err
        assert_certified(folder / "run")
        for name, digest in digests(folder / "run" / "pads").items():
            assert digest == want[name], f"trial {trial}: {name} in pads/ but not the finished pad"
    assert min(landed.values()) >= 5, landed  # each kind of signal landed in a running run
    for f in sorted(tmp_path.glob("t*/small.yaml")):  # every trial's folder resumes to the same pack
        r = onss("run", str(f), "--device", "cpu")
        assert r.returncode == 0, r.stderr
        assert digests(f.parent / "run" / "pads") == want
        assert (f.parent / "run" / "settings.json").read_bytes() == settings
        assert_certified(f.parent / "run")


def test_ctrl_c_during_clean_never_certifies_a_damaged_shard(tmp_path, reference):
    """The case that corrupted packs: ctrl+c (SIGINT to the group) while clean's pool encodes MP3s
    through libsndfile's callbacks. Ten trials at random moments of clean; then the resume."""
    want, _ = reference
    recipe = make(tmp_path, generation={"batch_size": 2})
    rng = np.random.default_rng(3)
    for _ in range(10):
        events = tmp_path / "run" / "events" / "supervisor.jsonl"
        since = len(events.read_text().splitlines()) if events.is_file() else 0
        p = start(recipe)
        while p.poll() is None and not _stage_started(tmp_path / "run", "clean", since):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.5))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert_certified(tmp_path / "run")
        if p.returncode == 0:
            break
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert digests(tmp_path / "run" / "pads") == want


def test_deleted_pads_are_made_again_and_said(tmp_path, reference):
    want, _ = reference
    recipe = make(tmp_path)
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    gone = sorted((tmp_path / "run" / "pads").glob("*.bin"))[0]
    gone.unlink()
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert f"[pack] again: pads/{gone.name} is missing" in r.stderr  # (progress: stderr)
    assert "[generate] already done" in r.stderr  # only what was missing is made again
    assert digests(tmp_path / "run" / "pads") == want


@pytest.mark.parametrize("damage", ["truncated", "deleted", "flipped"])
def test_a_shard_damaged_under_its_marker_is_made_again(tmp_path, reference, damage):
    want, _ = reference
    recipe = make(tmp_path)
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    shard = tmp_path / "run" / "generate" / "shard-00001.npy"
    if damage == "truncated":
        os.truncate(shard, shard.stat().st_size - 100)
    elif damage == "deleted":
        shard.unlink()
    else:
        data = bytearray(shard.read_bytes())
        data[-7] ^= 0x40
        shard.write_bytes(bytes(data))
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "[generate] again: generate/shard-00001.npy is" in r.stderr
    assert digests(tmp_path / "run" / "pads") == want
    assert_certified(tmp_path / "run")


def test_a_replaced_input_note_redoes_everything_downstream(tmp_path):
    """Replace a_60.wav by another sound after a finished run: the rerun says which note changed,
    makes everything after prepare again, and its pads are those of a fresh run on the new notes."""
    recipe = make(tmp_path / "old")
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    old = digests(tmp_path / "old" / "run" / "pads")
    t = np.arange(16000) / 16000
    other = (0.3 * np.sin(2 * np.pi * 523 * t) * np.exp(-3 * t)).astype(np.float32)
    sf.write(tmp_path / "old" / "audio" / "a_60.wav", other, 16000)
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "[prepare] again: input notes changed: a_60.wav" in r.stderr
    assert "already done" not in r.stderr.split("[prepare] again")[1].replace("[plan] already done", "")
    fresh = make(tmp_path / "new")
    sf.write(tmp_path / "new" / "audio" / "a_60.wav", other, 16000)
    assert onss("run", str(fresh), "--device", "cpu").returncode == 0
    now = digests(tmp_path / "old" / "run" / "pads")
    assert now == digests(tmp_path / "new" / "run" / "pads")
    assert now["a_b_c_d.bin"] != old["a_b_c_d.bin"] and now["e_b_c_d.bin"] == old["e_b_c_d.bin"]
    again = onss("run", str(recipe), "--device", "cpu")  # and then nothing is redone
    assert "again:" not in again.stderr


def test_touching_a_note_redoes_nothing(tmp_path):
    recipe = make(tmp_path)
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    note = tmp_path / "audio" / "b_64.wav"
    os.utime(note, (time.time() + 60, time.time() + 60))
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0 and "again:" not in r.stderr, r.stderr


def test_a_folder_of_the_users_files_is_refused_and_untouched(tmp_path):
    """``output: .`` where the user keeps a draft, a download in progress and the notes: refused
    before anything is written, and every file of theirs is as it was."""
    write_notes(tmp_path / "audio", NAMES, [60, 64])
    recipe = small_recipe(tmp_path, corners=CORNERS, output=".")
    (tmp_path / ".draft.tmp").write_text("my draft")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / ".dl.part").write_bytes(b"half a download")
    before = {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()}
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "holds files onss did not write" in r.stderr and "Set 'output' to a new or empty folder" in r.stderr
    assert {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()} == before


def test_only_onss_temp_files_are_swept(tmp_path, reference):
    """A killed run's temp files go on the rerun; a file of the user's that merely looks like one,
    in a folder onss did not make, stays (onss never sweeps outside its own folders)."""
    want, _ = reference
    recipe = make(tmp_path)
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    leftover = tmp_path / "run" / "clean" / ".shard-00000.npy.k2j3h4.tmp"
    leftover.write_bytes(b"partial")
    mine = tmp_path / "audio" / ".take.wav.x.tmp"
    mine.write_bytes(b"the user's")
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    assert not leftover.exists() and mine.read_bytes() == b"the user's"
    assert digests(tmp_path / "run" / "pads") == want


def test_a_disk_that_fills_up_is_reported_and_the_run_resumes(tmp_path, mounts, reference):
    """A real 2 MB tmpfs as the run folder fills in generate: writing the failure to state.json
    fails too, and the message must still come (it once ended in OSError from the error handler)."""
    want, _ = reference
    recipe = make(tmp_path / "r", output=str(tmp_path / "disk" / "run"))
    (tmp_path / "disk").mkdir()
    mounts("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(tmp_path / "disk"))
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "out of space" in r.stderr and "Free some space" in r.stderr, r.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmp_path / "disk")], check=True)
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert digests(tmp_path / "disk" / "run" / "pads") == want


def test_damaged_state_and_events_are_survived(tmp_path, reference):
    """state.json cut mid-write by something else and bytes that are not UTF-8 in an events file
    (once: tracebacks): status says what is damaged, the rerun rebuilds the state from the files
    (their markers certify them: nothing is made again) and its pads are the same."""
    want, _ = reference
    recipe = make(tmp_path)
    assert onss("run", str(recipe), "--device", "cpu").returncode == 0
    run = tmp_path / "run"
    run.joinpath("state.json").write_text('{"status": "do')
    with open(run / "events" / "supervisor.jsonl", "ab") as f:
        f.write(b'\xff\xfe\x00garbage\n{"t": 1}\n5\n')
    r = onss("status", str(run))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "state.json cannot be read (damaged)" in r.stdout
    pads = {f: f.stat().st_mtime_ns for f in (run / "pads").glob("*.bin")}
    r = onss("run", str(recipe), "--device", "cpu")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "written 0" in r.stderr  # every pad certified by its marker, none written again
    assert {f: f.stat().st_mtime_ns for f in (run / "pads").glob("*.bin")} == pads
    assert digests(run / "pads") == want
    r = onss("status", str(run))
    assert "cannot be read" not in r.stdout and "]  done" in r.stdout


def _workers_in_group(pgid: int) -> list[str]:
    """The generate and pool workers still alive in a process group (Linux /proc; multiprocessing's
    resource tracker, which goes by itself once its parent has gone, is not a worker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z" and ("pipeline.worker" in cmd or "spawn_main" in cmd):
            found.append(cmd)
    return found


def test_ctrl_c_stops_the_generate_workers_before_the_supervisor(tmp_path, reference):
    """ctrl+c (SIGINT to the group) while two generate worker processes run: they ignore it and the
    supervisor stops them (SIGTERM, then waits; their parent-death signal is the second line of
    defence): when it has exited, no worker of the run is alive, it says it was interrupted (130),
    nothing unfinished is certified, and the resumed pads are the same."""
    want, _ = reference
    recipe = make(tmp_path, generation={"gpus": 2, "batch_size": 2})
    run = tmp_path / "run"
    rng = np.random.default_rng(5)
    stopped = 0
    for _ in range(6):
        events = run / "events" / "generate-w1.jsonl"
        since = len(events.read_text().splitlines()) if events.is_file() else 0
        p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        while p.poll() is None and not (events.is_file() and len(events.read_text().splitlines()) > since):
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.3)))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err, err
        left = _workers_in_group(p.pid)
        assert not left, f"workers outlived their supervisor's ctrl+c: {left}"
        assert_certified(run)
        if p.returncode == 0:
            break
        assert p.returncode == 130 and "interrupted (SIGINT)" in err, err
        stopped += 1
    assert stopped >= 2
    r = onss("run", str(recipe))
    assert r.returncode == 0, r.stderr
    assert digests(run / "pads") == want
