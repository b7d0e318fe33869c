"""Measured speeds per device (what `onss bench` stores) and the projections made from them."""

import json
import os
import subprocess
import sys

import pytest

from onss_tui.pipeline.throughput import cpu_name, load_results, project, rate, save_result

H100 = "NVIDIA H100 80GB HBM3"


def result(device, *runs):
    return {"device": device, "runs": [{"precision": p, "batch": b, "samples_per_s": r} for p, b, r in runs]}


def test_rate_is_the_best_batch_and_auto_prefers_bf16(tmp_path):
    save_result(result(H100, ("fp32", 64, 1e5), ("bf16", 512, 2e6), ("bf16", 4096, 3e6), ("tf32", 4096, 1.5e6)),
                tmp_path)
    results = load_results(tmp_path)
    assert rate(H100, "bf16", results) == (3e6, "bf16")
    assert rate(H100, "tf32", results) == (1.5e6, "tf32")
    assert rate(H100, "auto", results) == (3e6, "bf16")
    assert rate("NVIDIA A100-SXM4-40GB", "auto", results) is None
    assert rate(H100, "fp32", results) == (1e5, "fp32")


def test_auto_falls_back_to_what_was_measured(tmp_path):
    results = [result(H100, ("fp32", 64, 1e5))]
    assert rate(H100, "auto", results) == (1e5, "fp32")
    assert rate(H100, "bf16", results) is None


def test_projection_adds_up_the_devices_and_says_unknown_otherwise():
    results = [result(H100, ("bf16", 4096, 2e6))]
    one = project(118_016, 64_000, [H100], "bf16", results)
    two = project(118_016, 64_000, [H100, H100], "bf16", results)
    assert one.seconds == pytest.approx(118_016 * 64_000 / 2e6)
    assert two.seconds == pytest.approx(one.seconds / 2)
    assert "on 2 x NVIDIA H100 80GB HBM3 (bf16, measured)" in two.text
    unknown = project(100, 64_000, [H100, "NVIDIA L4"], "bf16", results)
    assert unknown.seconds is None and "NVIDIA L4 not measured yet" in unknown.text and "onss bench" in unknown.text
    assert project(100, 64_000, [], "bf16", results).seconds is None


def test_damaged_result_files_are_skipped(tmp_path):
    save_result(result(H100, ("bf16", 1, 10.0)), tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"device": 3}))
    assert [r["device"] for r in load_results(tmp_path)] == [H100]
    assert load_results(tmp_path / "missing") == []


def test_onss_bench_on_the_cpu_stores_a_result_the_wizard_reads(tmp_path):
    env = {**os.environ, "ONSS_DATA_DIR": str(tmp_path)}
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "-m", "onss_tui.cli", "bench", "--device", "cpu", "--batch", "1", "2",
                        "--steps", "2", "--no-encoder", "--json", str(out)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "| fp32 | torch | 2 |" in p.stdout and "shipped sound set" in p.stdout
    data = json.loads(out.read_text())
    assert data["device"] == cpu_name() and [r["batch"] for r in data["runs"]] == [1, 2]
    assert all(r["samples_per_s"] > 0 and r["mb_per_voice"] > 0 for r in data["runs"])
    stored = load_results(tmp_path / "bench")
    assert stored == [data]
    projection = project(10, 64_000, [cpu_name()], "auto", stored)
    assert projection.seconds and "(fp32, measured)" in projection.text


def test_onss_bench_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = subprocess.run([sys.executable, "-m", "onss_tui.cli", "bench", "--device", "cuda"], capture_output=True,
                       text=True, env={**os.environ, "ONSS_DATA_DIR": str(tmp_path)})
    assert p.returncode == 2 and "no CUDA device" in p.stderr and "Traceback" not in p.stderr


def test_onss_bench_fidelity_table_on_the_golden_clips(tmp_path, golden_dir):
    env = {**os.environ, "ONSS_DATA_DIR": str(tmp_path)}
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "-m", "onss_tui.cli", "bench", "--device", "cpu", "--precision", "fp32", "bf16",
                        "--batch", "1", "--steps", "2", "--no-encoder", "--golden", str(golden_dir),
                        "--fidelity-samples", "32", "--json", str(out)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    fid = {f["precision"]: f for f in json.loads(out.read_text())["fidelity"]}
    assert {f["kernels"] for f in fid.values()} == {"torch"}  # the fused kernels are timed on GPUs only
    assert fid["fp32"]["kl_mean"] == 0 and fid["fp32"]["top1"] == 1 and fid["fp32"]["steps"] == 2 * 32
    assert 0 < fid["bf16"]["kl_mean"] < 0.05 and fid["bf16"]["top1"] > 0.9
    assert fid["bf16"]["meets_bar"] == (fid["bf16"]["kl_mean"] <= 0.01)
    assert "| bf16 | torch | " in p.stdout and "top-1 agreement" in p.stdout


@pytest.mark.parametrize("kernels", ["triton", "persistent"])
def test_onss_bench_refuses_fused_kernels_on_a_cpu_with_the_reason(tmp_path, kernels):
    env = {**os.environ, "ONSS_DATA_DIR": str(tmp_path), "TRITON_INTERPRET": "0"}
    cmd = [sys.executable, "-m", "onss_tui.cli", "bench", "--device", "cpu", "--kernels", "torch", kernels]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"--kernels {kernels}: " in p.stderr
    assert "(use kernels: torch there)" in p.stderr or "Triton is not installed" in p.stderr


def test_onss_bench_names_a_wrong_golden_folder(tmp_path):
    p = subprocess.run([sys.executable, "-m", "onss_tui.cli", "bench", "--device", "cpu", "--golden", str(tmp_path)],
                       capture_output=True, text=True, env={**os.environ, "ONSS_DATA_DIR": str(tmp_path)})
    assert p.returncode == 2 and str(tmp_path) in p.stderr and "nsynth_reference.npz" in p.stderr


def test_a_run_with_few_sounds_gets_the_rate_of_a_batch_it_can_fill():
    """A 4096-voice rate is no promise for 40 sounds: only batches up to each device's share count,
    and below the smallest batch measured the rate scales with the voices."""
    results = [result(H100, ("bf16", 1, 1.5e3), ("bf16", 64, 7.5e4), ("bf16", 4096, 1.5e6))]
    assert rate(H100, "bf16", results, voices=100_000) == (1.5e6, "bf16")
    assert rate(H100, "bf16", results, voices=100) == (7.5e4, "bf16")
    assert rate(H100, "bf16", results, voices=1) == (1.5e3, "bf16")
    only_big = [result(H100, ("bf16", 4096, 1.5e6))]
    assert rate(H100, "bf16", only_big, voices=1024) == (1.5e6 / 4, "bf16")
    two = project(200, 64_000, [H100, H100], "bf16", results)  # 100 voices each: the batch-64 rate
    assert two.seconds == pytest.approx(200 * 64_000 / (2 * 7.5e4))


def test_an_unmeasured_gpu_model_onss_measured_is_projected_from_that_and_says_so():
    """The H100 figures in docs/benchmarks.md ship with onss: a user's H100 gets a projection
    before its own `onss bench`, marked as onss's measurement; the user's own figures win."""
    from onss_tui.pipeline.throughput import reference_results

    refs = reference_results()
    h100 = next(r for r in refs if r["device"] == H100)
    assert h100["date"] == "2026-11-25" and {r["precision"] for r in h100["runs"]} == {"bf16", "tf32", "fp32"}
    best = max(r["samples_per_s"] for r in h100["runs"] if r["precision"] == "bf16")
    shipped = project(118_016, 64_000, [H100], "auto", results=[])
    assert shipped.seconds == pytest.approx(118_016 * 64_000 / best)
    assert "from onss's measurement of this GPU model on 2026-11-25" in shipped.text and "onss bench" in shipped.text
    own = project(118_016, 64_000, [H100], "auto", results=[result(H100, ("bf16", 8192, 1e6))])
    assert own.seconds == pytest.approx(118_016 * 64_000 / 1e6) and "(bf16, measured)" in own.text
    assert project(10, 64_000, ["NVIDIA L4"], "auto", results=[]).seconds is None


def test_the_package_data_a_wheel_needs_is_declared():
    """Every file of the package that is not a module (the TUI's stylesheet, the reference
    measurements) is matched by pyproject's package-data, or a `pip install .` would lose it."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["onss_tui"]
    data = [p.relative_to(root / "onss_tui").as_posix() for p in (root / "onss_tui").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert "tui/onss.tcss" in data and "pipeline/reference_bench.json" in data
    assert [f for f in data if not any(fnmatch.fnmatch(f, g) for g in globs)] == []


def test_a_bench_that_stalls_reports_it_and_goes_on(monkeypatch):
    """A persistent launch that stalls (tests/test_persistent.py makes one for real) fails its
    kernels' batches in `onss bench`, said in the table, and the other layer steps are still timed."""
    from onss_tui import bench
    from onss_tui.engine.persistent import BarrierStall, stalled

    timed = bench.bench_generate

    def generate(model, batch, steps):
        if model.kernels == "persistent":
            stalled(1 << 30)
        return timed(model, batch, steps)

    monkeypatch.setattr(bench, "bench_generate", generate)
    lines = []
    result = bench.run("cpu", ["fp32"], [1], 2, encoder=False, progress=lines.append,
                       kernels=["persistent", "torch"])
    assert [(r["kernels"], r["batch"]) for r in result["runs"]] == [("torch", 1)]
    assert [(f["kernels"], f["batch"]) for f in result["failed"]] == [("persistent", 1)]
    assert "stalled" in result["failed"][0]["error"] and any("persistent batch 1: the persistent" in x for x in lines)
    assert "failed: fp32 persistent batch 1: the persistent kernel stalled" in bench.table(result)
    assert issubclass(BarrierStall, RuntimeError)
