"""The pipeline end to end on the CPU: the demo, the nsynth engine, resume after kills, errors."""

import importlib.util
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

from onss_tui.cli import main
from onss_tui.device.pads import ROW_LENGTH, open_pad, row_index
from onss_tui.device.settings import validate_pack
from onss_tui.pipeline.demo import INSTRUMENTS, PITCHES, make_demo
from onss_tui.pipeline.rundir import RunDir, RunLocked
from onss_tui.pipeline.runner import RunError, Runner
from onss_tui.recipe import load_recipe, save_recipe
from tests.helpers import digests, fake_gpus, small_recipe, write_notes


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    recipe = make_demo(out)
    Runner.from_file(recipe, device="cpu", cpu_workers=2).execute()
    return out, recipe


def test_demo_makes_a_valid_labelled_pack(demo_run):
    out, recipe = demo_run
    run = out / "run"
    assert validate_pack(run / "settings.json", run / "pads", resolution=9, pitches=PITCHES) == []
    (pad,) = (run / "pads").glob("*.bin")
    assert pad.name == "_".join(INSTRUMENTS) + ".bin"  # top-left, top-right, bottom-left, bottom-right
    assert pad.stat().st_size == 81 * len(PITCHES) * ROW_LENGTH * 2
    settings = json.loads((run / "settings.json").read_text())
    assert settings["onss"]["preview"] is True
    assert [c["instruments"][0]["name"] for c in settings["corners"]] == INSTRUMENTS
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "done" and all(s["status"] == "done" for s in state["stages"].values())


def test_demo_corner_rows_hold_the_corner_instruments(demo_run):
    """The pure top-right row must sound like the 'saw' note (many harmonics), bottom-left like 'pluck'."""
    out, _ = demo_run
    pad = open_pad(next((out / "run" / "pads").glob("*.bin")), 9, len(PITCHES))

    def brightness(row):
        spec = np.abs(np.fft.rfft(row.astype(np.float64)))
        f = np.fft.rfftfreq(len(row), 1 / 16000)
        return (spec * f).sum() / spec.sum()

    sine = brightness(pad[row_index(0, 0, 0, 9, 4)])
    saw = brightness(pad[row_index(8, 0, 0, 9, 4)])
    assert saw > 2 * sine
    # pitch index 2 (MIDI 60) of the sine corner: fundamental near 261.6 Hz
    row = pad[row_index(0, 0, 2, 9, 4)].astype(np.float64)
    peak = np.argmax(np.abs(np.fft.rfft(row))) * 16000 / len(row)
    assert abs(peak - 261.6) < 3


def test_rerun_is_idempotent_and_changed_recipe_is_refused(demo_run):
    out, recipe = demo_run
    before = digests(out / "run" / "pads")
    plan = (out / "run" / "plan.json").read_bytes()
    mtime = next((out / "run" / "pads").glob("*.bin")).stat().st_mtime_ns
    Runner.from_file(recipe, device="cpu").execute()
    assert digests(out / "run" / "pads") == before
    assert (out / "run" / "plan.json").read_bytes() == plan  # a resumed run keeps its plan
    assert next((out / "run" / "pads").glob("*.bin")).stat().st_mtime_ns == mtime  # not rewritten
    r = load_recipe(recipe)
    other = recipe.with_name("other.yaml")
    save_recipe(r.model_copy(update={"resolution": 5}), other)
    with pytest.raises(RunError, match="different recipe"):
        Runner.from_file(other, device="cpu").execute()


def test_a_second_runner_is_refused(demo_run):
    out, recipe = demo_run
    run = RunDir(out / "run")
    with run.lock():
        assert run.locked_by() == os.getpid()
        with pytest.raises(RunLocked, match="another onss run"):
            Runner.from_file(recipe, device="cpu").execute()
    assert run.locked_by() is None


def test_status_cli(demo_run, capsys):
    out, recipe = demo_run
    assert main(["status", str(out / "run")]) == 0
    text = capsys.readouterr().out
    assert "demo [preview]" in text and "validate     done" in text
    assert main(["status", str(recipe), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"


# ---------------------------------------------------------------------------------------------
# bad inputs


def test_prepare_reports_every_problem_with_its_fix(tmp_path, capsys):
    write_notes(tmp_path / "audio", ["a", "b", "c"], [60, 64])
    (tmp_path / "audio" / "c_64.wav").unlink()
    write_notes(tmp_path / "audio", ["D"], [60, 64])  # mixed case
    (tmp_path / "audio" / "a_60.wav").write_bytes(b"not audio at all")
    (tmp_path / "audio" / "x_y_60.wav").write_bytes(b"")
    code = main(["run", str(small_recipe(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "c_64.wav: missing: c at MIDI pitch 64 (found pitches [60])" in err
    assert "D_60.wav: names are case-sensitive: the recipe says 'd'" in err
    assert "a_60.wav: not a readable audio file" in err
    assert "x_y_60.wav: more than one '_'" in err
    assert not (tmp_path / "run" / "pads").exists()


def test_prepare_warnings(tmp_path):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    sf.write(tmp_path / "audio" / "b_60.wav", np.clip(np.sin(np.arange(16000) / 9) * 3, -1, 1), 16000)  # clipped
    sf.write(tmp_path / "audio" / "c_60.wav", np.full(4000, 0.3, np.float32), 16000)  # short, DC
    events = []
    Runner.from_file(small_recipe(tmp_path), device="cpu", listener=events.append).execute()
    text = "\n".join(e["message"] for e in events if e["event"] == "warning")
    assert "b_60.wav: clipped" in text and "c_60.wav: only 0.25 s" in text and "DC offset" in text


# ---------------------------------------------------------------------------------------------
# kill -9 at random moments, run again: byte-identical pads, nothing partial ever looks finished


def _start(recipe: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--json", "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _tagged(tag: str) -> list[int]:
    """The live processes whose environment holds ``tag`` (Linux: /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


KILL_PITCHES = [60, 62, 64, 65]  # four pads: the work outlasts the start-up a resume pays


def test_kill_anywhere_and_resume_gives_identical_pads(tmp_path):
    write_notes(tmp_path / "ref" / "audio", ["a", "b", "c", "d", "e"], KILL_PITCHES)
    ref_recipe = small_recipe(tmp_path / "ref", corners={"top_left": ["a", "e"], "top_right": ["b"],
                                                         "bottom_left": ["c"], "bottom_right": ["d"]},
                              pitches=KILL_PITCHES, generation={"sample_length": 8192, "batch_size": 4})
    t0 = time.monotonic()  # timed as the runs below are started
    assert _start(ref_recipe).wait() == 0
    full = time.monotonic() - t0
    t0 = time.monotonic()  # a finished run again: the start-up and checks every resume pays first
    assert _start(ref_recipe).wait() == 0
    again = time.monotonic() - t0
    want = digests(tmp_path / "ref" / "run" / "pads")
    assert len(want) == 2
    rng = np.random.default_rng(1)
    work = tmp_path / "work"
    write_notes(work / "audio", ["a", "b", "c", "d", "e"], KILL_PITCHES)
    recipe = work / "small.yaml"
    recipe.write_text(ref_recipe.read_text())
    kills = 0
    tag = f"ONSS_TEST_KILLED={os.getpid()}-{time.time_ns()}"  # marks the supervisors and every child of theirs
    env = dict(os.environ, ONSS_TEST_KILLED=tag.split("=", 1)[1])
    # each resume pays the start-up again, then gets on by a random part of the work: the kills
    # fall anywhere (in the start-up too) and step through the whole run, however fast this machine is
    work_s = max(full - again, 0.5)
    for _ in range(16):
        delay = rng.uniform(0.3, again) if rng.random() < 0.25 else again + rng.uniform(0.0, work_s / 5)
        p = _start(recipe, env)
        time.sleep(delay)
        if p.poll() is not None:  # it finished before the kill
            break
        p.send_signal(signal.SIGKILL)
        kills += 1
        p.wait()
        # what looks finished is finished: every .bin present is complete and correct
        for name, digest in digests(work / "run" / "pads").items():
            assert digest == want[name], f"partial pad {name} after a kill at {delay:.2f}s"
    assert kills >= 3
    if sys.platform == "linux":  # nothing of a killed supervisor lives on (its CPU pool's workers once did)
        deadline = time.monotonic() + 10
        while _tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _tagged(tag)
    assert subprocess.run([sys.executable, "-m", "onss_tui", "run", str(recipe), "--json"],
                          capture_output=True).returncode == 0
    assert digests(work / "run" / "pads") == want
    assert not [f for f in (work / "run").rglob(".*") if f.is_file()]  # the resumed run swept stale temp files
    assert (work / "run" / "settings.json").read_bytes() == (tmp_path / "ref" / "run" / "settings.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# the nsynth engine on the golden (random) weights, short sounds


def test_nsynth_engine_through_every_stage(tmp_path, golden_checkpoint):
    """On a (fake) machine with four GPUs and gpus: [3], the one worker is a process on GPU 3
    (CUDA_VISIBLE_DEVICES=3; the computation runs on the CPU here)."""
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "batch_size": 2, "save_every": 256, "seed": 3,
                                      "gpus": [3], "precision": "fp32"})
    events = []
    Runner.from_file(recipe, machine=fake_gpus(4), listener=events.append).execute()
    run = tmp_path / "run"
    assert validate_pack(run / "settings.json", run / "pads", resolution=2, pitches=[60]) == []
    enc = np.load(run / "embed" / "encodings.npy")
    assert enc.shape == (4, 1, 16)
    z = np.load(run / "interpolate" / "embeddings.npy")
    assert np.array_equal(z, enc)  # resolution 2: the four pure corners, weight 1 each
    gen = np.load(run / "generate" / "shard-00000.npy")
    assert gen.shape == (2, 512) and gen.dtype == np.int16 and np.abs(gen).max() > 1000
    progress = [e for e in events if e["stream"] == "generate-w0" and e["event"] == "progress"]
    assert [(e["batch"], e["sample"]) for e in progress] == [(1, 256), (1, 512), (2, 256), (2, 512)]
    assert {e["gpu"] for e in progress} == {3}  # the dashboard puts the worker's card on GPU 3
    [start] = [e for e in events if e["stream"] == "generate-w0" and e["event"] == "start"]
    assert start["visible_devices"] == "3"
    assert not list((run / "generate").glob("*.state.pt"))


def test_precision_auto_is_measured_once_and_kept(tmp_path, golden_checkpoint, monkeypatch):
    """On a GPU, ``precision: auto`` measures bf16 against fp32 on the run's first notes, stores
    the choice in the plan, and a resumed run uses it without measuring again. (A fake GPU here,
    computing on the CPU; on a CPU machine a run takes fp32 without measuring.)"""
    from onss_tui.engine.fidelity import KL_BAR
    from onss_tui.pipeline import plan as planning
    from onss_tui.pipeline.engines import engine_for
    from onss_tui.pipeline.stages import plan as plan_stage

    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "batch_size": 4, "precision": "auto"})
    cpu = planning.lay_out(load_recipe(recipe), planning.Machine.detect("cpu"))
    assert cpu.precision == "fp32"  # the CPU default
    monkeypatch.setattr(plan_stage, "FIDELITY_SAMPLES", 32)
    events = []
    Runner.from_file(recipe, machine=fake_gpus(1), listener=events.append).execute()
    run = RunDir(tmp_path / "run")
    chosen = run.plan().precision
    [event] = [e for e in events if e["event"] == "precision"]
    bf16 = event["measured"][0]
    assert bf16["precision"] == "bf16" and bf16["steps"] == 2 * 32
    assert chosen == ("bf16" if bf16["kl_mean"] <= KL_BAR else "tf32") == event["chosen"]
    monkeypatch.setattr(planning, "_measure_precision", lambda *a: pytest.fail("measured twice"))
    Runner.from_run_dir(run.path, machine=fake_gpus(1)).execute()
    assert run.plan().precision == chosen and engine_for(run.plan(), "cpu").model().precision == chosen


def test_nsynth_shard_resumes_mid_batch_bit_exactly(tmp_path, small_model):
    from onss_tui.pipeline.stages.generate import generate_nsynth_shard

    emb = np.random.default_rng(0).normal(0, 5, (2, 1, 16)).astype(np.float32)
    ids = np.array([7, 8])
    whole = tmp_path / "whole.npy"
    generate_nsynth_shard(small_model, emb, ids, 1, whole, save_every=128)

    class Killed(Exception):
        pass

    def die(t, total):
        if t == 384:
            raise Killed

    cut = tmp_path / "cut.npy"
    with pytest.raises(Killed):
        generate_nsynth_shard(small_model, emb, ids, 1, cut, save_every=128, progress=die)
    assert (tmp_path / "cut.state.pt").is_file() and not cut.exists()
    # compact: the samples so far, not the ring buffers (61 KB for these 4 layers in fp32; 2 x 12.6 MB
    # for the full model)
    assert (tmp_path / "cut.state.pt").stat().st_size < 20_000
    seen = []
    generate_nsynth_shard(small_model, emb, ids, 1, cut, save_every=128, progress=lambda t, n: seen.append(t))
    assert seen == [384, 512]  # resumed from the state saved at 256, not from the start
    assert np.array_equal(np.load(cut), np.load(whole))


def test_background_saver_writes_atomically_and_reports_failures(tmp_path):
    import torch

    from onss_tui.pipeline.stages.generate import BackgroundSaver

    path = tmp_path / "s.state.pt"
    saver = BackgroundSaver(path)
    for t in range(5):
        saver.save({"t": t, "codes": torch.full((2, t), t, dtype=torch.uint8)})
    saver.wait()
    assert torch.load(path, weights_only=True)["t"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["s.state.pt"]  # no temp files left
    blocked = tmp_path / "file"
    blocked.write_text("x")
    bad = BackgroundSaver(blocked / "s.state.pt")  # its folder is a file: the write fails
    bad.save({"t": 1})
    with pytest.raises(OSError):
        bad.wait()
    bad.wait()  # reported once


def test_several_worker_processes_share_the_shards(tmp_path):
    """gpus: 2 starts two generate worker processes (CPU here; one per GPU on a GPU box)."""
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    recipe = small_recipe(tmp_path, generation={"sample_length": 8192, "batch_size": 5, "gpus": 2})
    events = []
    Runner.from_file(recipe, device="cpu", listener=events.append).execute()
    run = tmp_path / "run"
    assert validate_pack(run / "settings.json", run / "pads") == []
    shards = RunDir(run).plan().shards
    assert {s.worker for s in shards} == {0, 1}
    done = {e["stream"] for e in events if e["event"] == "shard_done"}
    assert done == {"generate-w0", "generate-w1"}
    assert (run / "logs" / "worker-1.log").is_file()


def test_demo_cli_plain_lines_and_json(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    out, err = capsys.readouterr()  # progress on stderr, results on stdout
    assert "[prepare] started" in err and "[validate] done" in err and "Validated: 0 errors" in out
    assert "PREVIEW engine" in out
    # a second run: everything already done, and --json gives one event per line
    assert main(["demo", "--out", str(tmp_path / "d"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {e["event"] for e in lines} >= {"run_start", "stage_skip", "run_done"}


def test_kernels_auto_is_timed_once_on_a_gpu_and_kept(tmp_path, golden_checkpoint, monkeypatch):
    """``kernels: auto``: PyTorch on a CPU without timing; on a GPU with Triton the plan times both
    layer steps once and stores the faster acceptable one in plan.json, which the workers and a
    resumed run read. (The GPU is simulated: the timing is faked here, and choose_kernels itself
    is tested in test_kernels.)"""
    import onss_tui.engine.auto
    from onss_tui.pipeline import plan as planning
    from onss_tui.pipeline.engines import engine_for

    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "batch_size": 4, "precision": "fp32"})
    assert planning.lay_out(load_recipe(recipe), planning.Machine.detect("cpu")).kernels == "torch"  # nothing to time
    timed = []

    def fake_choose(model, batch, steps, warm, acceptable):
        timed.append((model.precision, batch, steps))
        return "torch", {"torch": 2.0, "triton": 1.0}

    monkeypatch.setattr(onss_tui.engine.auto, "choose_kernels", fake_choose)
    events = []
    machine = fake_gpus(1)
    machine.fused = None  # the fused kernels can run: auto times them
    Runner.from_file(recipe, machine=machine, listener=events.append).execute()
    run = RunDir(tmp_path / "run")
    assert timed == [("fp32", 4, planning.KERNEL_STEPS)]
    assert run.plan().kernels == "torch"
    [event] = [e for e in events if e["event"] == "kernels"]
    assert event["chosen"] == "torch" and event["samples_per_s"] == {"torch": 2.0, "triton": 1.0}
    monkeypatch.setattr(onss_tui.engine.auto, "choose_kernels", lambda *a, **k: pytest.fail("timed twice"))
    Runner.from_run_dir(run.path, machine=machine).execute()
    assert run.plan().kernels == "torch" and engine_for(run.plan(), "cpu").model().kernels == "torch"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_fused_kernels_fidelity_check_on_the_runs_own_notes(tmp_path, golden_checkpoint):
    """The veto ``kernels: auto`` applies to faster fused kernels: their KL to fp32 PyTorch on the
    run's first notes (Triton's interpreter on a CPU)."""
    from onss_tui.model import NSynth
    from onss_tui.pipeline.plan import kernel_fidelity
    from onss_tui.pipeline.stages.prepare import load_notes, prepare

    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "batch_size": 4, "precision": "bf16"})
    r = load_recipe(recipe)
    prepare(r, tmp_path / "audio", tmp_path / "prepare")
    _, notes = load_notes(tmp_path / "prepare")
    model = NSynth.load(golden_checkpoint, precision="bf16")
    found = kernel_fidelity(model, "triton", np.asarray(notes[:2]), 3)
    assert found["precision"] == "bf16" and found["steps"] == 2 * 3
    assert found["meets_bar"] and found["kl_mean"] < 0.01


def test_kernels_triton_where_they_cannot_run_is_refused_before_any_work(tmp_path, golden_checkpoint, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "kernels": "triton"})
    with pytest.raises(RunError, match=r"generation.kernels is 'triton', but .*Set generation.kernels to auto"):
        Runner.from_file(recipe, device="cpu").execute()
    assert not (tmp_path / "run" / "prepare").exists()


# ---------------------------------------------------------------------------------------------
# the plan decides once, on the GPUs the run uses


def test_the_plan_decides_everything_once_on_the_gpus_the_recipe_names(tmp_path, golden_checkpoint, monkeypatch):
    """gpus: [2, 3] on a (fake) four-GPU machine: the precision and kernel measurements run on GPU
    2, the batch comes from GPUs 2 and 3's free memory, the two workers run on GPUs 2 and 3, and
    nothing ever reaches GPU 0 or 1. The workers read only the plan and the run folder."""
    import onss_tui.engine.auto
    from onss_tui.pipeline import plan as planning

    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "save_every": 256, "gpus": [2, 3]})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two worker processes computing on this machine's CPUs
    measured, timed = [], []  # the measurements themselves are faked here (test_precision_auto... runs one)
    monkeypatch.setattr(planning, "_measure_precision",
                        lambda checkpoint, device, clips, samples: measured.append(device) or ("fp32", []))
    monkeypatch.setattr(onss_tui.engine.auto, "choose_kernels",
                        lambda model, batch, **k: timed.append(batch) or ("torch", {"torch": 2.0, "triton": 1.0}))
    machine = fake_gpus(4)
    machine.fused = None
    events = []
    Runner.from_file(recipe, machine=machine, listener=events.append).execute()
    plan = RunDir(tmp_path / "run").plan()
    assert machine.devices and set(machine.devices) == {2}  # every model the supervisor loaded: on GPU 2
    assert measured == ["cpu"]  # (the fake machine's device for GPU 2)
    assert [m.gpu for m in plan.measurements] == [2, 2] and [m.setting for m in plan.measurements] == ["precision",
                                                                                                        "kernels"]
    assert [e.gpu for e in plan.executors] == [2, 3]
    free = min(g.memory_total - g.memory_used for g in machine.gpus.gpus if g.index in (2, 3))
    assert f"{free / 2**30:.1f} GiB" in plan.reasons["batch_size"]
    assert plan.batch_size == planning._gpu_batch(free, plan.precision, 512) and timed == [min(plan.batch_size, 1024)]
    starts = {e["stream"]: e for e in events if e["event"] == "start"}
    assert {s: (e["gpu"], e["visible_devices"]) for s, e in starts.items()} == {"generate-w0": (2, "2"),
                                                                               "generate-w1": (3, "3")}
    assert {e["stream"] for e in events if e["event"] == "shard_done"} == {"generate-w0", "generate-w1"}
    assert validate_pack(tmp_path / "run" / "settings.json", tmp_path / "run" / "pads") == []


def test_gpus_the_machine_lacks_are_refused_before_any_work(tmp_path, golden_checkpoint):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "gpus": [1, 5]})
    with pytest.raises(RunError, match=r"generation.gpus names GPU 5, but this machine has GPUs 0, 1, 2, 3"):
        Runner.from_file(recipe, machine=fake_gpus(4)).execute()
    assert not (tmp_path / "run" / "prepare").exists()
