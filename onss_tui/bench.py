"""Generation speed on this machine: ``onss bench`` and ``benchmarks/generate.py``.

Samples/s are summed over the batch. The weights are random (the full 62M-parameter model; speed
does not depend on their values). The result is stored per device (``pipeline.throughput``) so the
wizard projects run times from what this machine measured, never from a datasheet.
"""

from __future__ import annotations

import datetime
import time

import numpy as np

from onss_tui.engine.auto import choose_kernels, kernel_choices, sync, timed_steps
from onss_tui.pipeline.throughput import cpu_name

__all__ = ["run", "table", "bench_generate", "bench_encode", "bench_fidelity", "random_model", "device_name",
           "peak_tflops", "choose_kernels", "kernel_choices"]

MFLOP_PER_SAMPLE = 119.5  # spec: 59.74 M multiply-adds per generated sample per voice

# Dense tensor-core peaks (TFLOP/s) per precision, from the vendors' datasheets, for the roofline %.
PEAK_TFLOPS = {
    "H100": {"bf16": 989.5, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.5, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def peak_tflops(device: str, precision: str) -> float | None:
    for key, peaks in PEAK_TFLOPS.items():
        if key in device:
            return peaks.get(precision)
    return None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def random_model(device: str, precision: str):
    from onss_tui.model import NSynth

    rng = np.random.default_rng(0)
    variables = {}
    for name, shape in NSynth.variable_shapes().items():
        scale = 1 / np.sqrt(shape[1] * shape[2]) if name.endswith("/W") else 0.1
        variables[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return NSynth.from_tf_variables(variables, device=device, precision=precision)


def bench_generate(model, batch: int, steps: int) -> dict:
    """Time ``steps`` incremental decoder steps of ``batch`` voices (after a short warm-up)."""
    import torch

    chunk = 64  # DeviceGeneration's graph chunk: warm up two (eager + capture), time whole chunks
    steps = -(-steps // chunk) * chunk
    warm = 2 * chunk
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
        base = torch.cuda.memory_allocated(model.device)
    dt, gen = timed_steps(model, batch, steps, warm)
    rate = batch * steps / dt
    out = {"batch": batch, "kernels": model.kernels, "steps": steps, "seconds": round(dt, 4),
           "samples_per_s": round(rate, 1), "ms_per_step": round(1000 * dt / steps, 3),
           "tflops": round(rate * MFLOP_PER_SAMPLE / 1e6, 4)}
    if cuda:
        out["mb_per_voice"] = round((torch.cuda.max_memory_allocated(model.device) - base) / batch / 1e6, 2)
    else:  # the decoder state: every layer's ring buffer plus the start taps
        state = gen.state_dict()["decoder"]
        out["mb_per_voice"] = round(sum(b.numel() * b.element_size() for b in state["buffers"]) / batch / 1e6, 2)
    return out


def bench_encode(model, batch: int = 4, length: int = 64000) -> dict:
    from onss_tui.model.encoder import HOP

    audio = np.random.default_rng(2).uniform(-0.5, 0.5, (batch, length)).astype(np.float32)
    model.encode(audio[:1, :HOP * 4])
    sync(model)
    t0 = time.perf_counter()
    model.encode(audio)
    sync(model)
    dt = time.perf_counter() - t0
    return {"batch": batch, "seconds": round(dt, 3), "x_real_time": round(batch * length / 16000 / dt, 1)}


def bench_fidelity(device: str, precisions: list[str], golden_dir, samples: int,
                   kernels: list[str] | None = None) -> list[dict]:
    """Per precision (and layer step): mean per-step KL to fp32 PyTorch and top-1 agreement,
    teacher-forced through the generator's one-step decoder on the golden clips with the golden
    weights."""
    from onss_tui.engine.fidelity import compare
    from onss_tui.engine.persistent import BarrierStall
    from onss_tui.model import NSynth
    from onss_tui.model.golden import golden_reference, golden_variables

    reference = NSynth.from_tf_variables(golden_variables(golden_dir), device=device, precision="fp32")
    ref = golden_reference(golden_dir)
    audio = ref["audio"][:, :samples].astype(np.float32)
    enc = ref["encoding"]
    want = reference.log_probs(audio, enc, mode="incremental")
    out = []
    for k in kernels or kernel_choices(reference):
        for p in precisions:
            model = reference.with_precision(p, kernels=k)
            try:
                got = want if (p, k) == ("fp32", "torch") else model.log_probs(audio, enc, mode="incremental")
            except BarrierStall as exc:
                out.append({"precision": p, "kernels": k, "error": str(exc)})
                continue
            out.append({**compare(want, got, p).as_dict(), "kernels": k})
    return out


def run(device: str, precisions: list[str], batches: list[int], steps: int, encoder: bool = True,
        progress=print, golden_dir=None, fidelity_samples: int = 0, kernels: list[str] | None = None) -> dict:
    """Every (precision, kernels, batch); a batch that runs out of GPU memory ends that list.
    ``kernels``: the layer steps to time (default: every one that runs on this device)."""
    import torch

    from onss_tui.engine.persistent import MAX_BATCH as PERSISTENT_MAX
    from onss_tui.engine.persistent import BarrierStall

    name = device_name(device)
    result = {"device": name, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
              "threads": torch.get_num_threads(), "steps": steps, "runs": [], "encoder": []}
    if device.startswith("cuda"):  # and the largest batch that fits, as `batch_size: auto` would pick it
        from onss_tui.engine.fastgen import auto_batch, voice_bytes
        from onss_tui.model.encoder import LAYERS, dilation
        from onss_tui.vocab import torch_dtype

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        dilations = [dilation(i) for i in range(LAYERS)]
        biggest = max(auto_batch(free, voice_bytes(dilations, torch_dtype(p)), cap=1 << 15) for p in precisions)
        batches = sorted(set(batches) | {biggest})
    for precision in precisions:
        model = random_model(device, precision)
        peak = peak_tflops(name, precision)
        for k in kernels or kernel_choices(model):
            for b in batches:
                if k == "persistent" and b > PERSISTENT_MAX:
                    progress(f"{precision} {k} batch {b}: skipped (persistent runs up to {PERSISTENT_MAX} voices)")
                    continue
                try:
                    r = bench_generate(model.with_precision(precision, kernels=k), b, steps)
                except torch.cuda.OutOfMemoryError:
                    progress(f"{precision} {k} batch {b}: out of GPU memory, larger batches skipped")
                    torch.cuda.empty_cache()
                    break
                except BarrierStall as exc:
                    progress(f"{precision} {k} batch {b}: {exc} (its other batches skipped)")
                    result.setdefault("failed", []).append({"precision": precision, "kernels": k, "batch": b,
                                                            "error": str(exc)})
                    break
                if peak:
                    r["roofline_pct"] = round(100 * r["tflops"] / peak, 1)
                result["runs"].append({"precision": precision, **r})
                progress(f"{precision} {k} batch {b}: {r['samples_per_s']:,.0f} samples/s")
        if encoder:
            result["encoder"].append({"precision": precision, **bench_encode(model)})
        del model
    if golden_dir is not None and fidelity_samples:
        progress(f"fidelity: {fidelity_samples} teacher-forced steps of each golden clip per precision")
        result["fidelity"] = bench_fidelity(device, precisions, golden_dir, fidelity_samples, kernels)
    return result


def table(result: dict) -> str:
    lines = [f"{result['device']}, torch {result['torch']}, {result['date']}", "",
             "| precision | kernels | batch | samples/s | ms/step | TFLOP/s | % roofline | MB/voice |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['precision']} | {r.get('kernels', 'torch')} | {r['batch']} | {r['samples_per_s']:,.0f} | "
                     f"{r['ms_per_step']} | "
                     f"{r['tflops']} | {r.get('roofline_pct', '-')} | {r.get('mb_per_voice', '-')} |")
    for e in result.get("encoder", []):
        lines.append(f"\nencoder ({e['precision']}): {e['x_real_time']}x real time (batch {e['batch']})")
    if result.get("fidelity"):
        lines += ["", "| precision | kernels | mean KL to fp32 (nats/step) | max KL | top-1 agreement | meets 0.01 |",
                  "|---|---|---|---|---|---|"]
        for f in result["fidelity"]:
            if "error" in f:
                lines.append(f"| {f['precision']} | {f['kernels']} | failed: see below | - | - | no |")
                continue
            lines.append(f"| {f['precision']} | {f.get('kernels', 'torch')} | {f['kl_mean']:.2e} | {f['kl_max']:.2e} | "
                         f"{100 * f['top1']:.2f}% | "
                         f"{'yes' if f['meets_bar'] else 'no'} |")
    for f in result.get("failed", []) + [f for f in result.get("fidelity", []) if "error" in f]:
        where = f"batch {f['batch']}" if "batch" in f else "fidelity"
        lines.append(f"\nfailed: {f['precision']} {f['kernels']} {where}: {f['error']}")
    best = max(result["runs"], key=lambda r: r["samples_per_s"], default=None)
    if best:
        from onss_tui.pipeline.throughput import human_time

        shipped = 118_016 * 64_000 / best["samples_per_s"]
        lines.append(f"\nshipped sound set (118,016 sounds x 64,000 samples) at the best rate "
                     f"({best['precision']}, {best.get('kernels', 'torch')} kernels, batch {best['batch']}): "
                     f"{human_time(shipped)} on this one device")
    return "\n".join(lines)
