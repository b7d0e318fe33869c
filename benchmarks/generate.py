"""Generation speed of the incremental decoder on this machine (samples/s summed over the batch).

    python benchmarks/generate.py --device cpu --precision fp32 --batch 1 8 --steps 64
    python benchmarks/generate.py --device cuda --precision bf16 --batch 1 64 512 --steps 512

Weights are random (the full 62M-parameter model; speed does not depend on their values).
Prints a Markdown table and writes the figures as JSON (--json FILE). Never used in tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

import numpy as np
import torch

from onss_tui.model import NSynth
from onss_tui.model.encoder import HOP

MFLOP_PER_SAMPLE = 119.5  # spec: 59.74 M MAC per generated sample per voice


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def random_model(device: str, precision: str) -> NSynth:
    rng = np.random.default_rng(0)
    variables = {}
    for name, shape in NSynth.variable_shapes().items():
        scale = 1 / np.sqrt(shape[1] * shape[2]) if name.endswith("/W") else 0.1
        variables[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return NSynth.from_tf_variables(variables, device=device, precision=precision)


def bench_generate(model: NSynth, batch: int, steps: int) -> dict:
    enc = np.random.default_rng(1).normal(0, 3, (batch, 1 + steps // HOP, 16)).astype(np.float32)
    gen = model.generation(enc)
    with model.precision_scope():
        gen.advance(8)  # warm-up
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen.advance(steps)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    rate = batch * steps / dt
    return {"batch": batch, "steps": steps, "seconds": round(dt, 4), "samples_per_s": round(rate, 1),
            "ms_per_step": round(1000 * dt / steps, 3), "tflops": round(rate * MFLOP_PER_SAMPLE / 1e6, 4)}


def bench_encode(model: NSynth, batch: int = 4, length: int = 64000) -> dict:
    audio = np.random.default_rng(2).uniform(-0.5, 0.5, (batch, length)).astype(np.float32)
    model.encode(audio[:1, :HOP * 4])
    t0 = time.perf_counter()
    model.encode(audio)
    dt = time.perf_counter() - t0
    return {"batch": batch, "seconds": round(dt, 3), "x_real_time": round(batch * length / 16000 / dt, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", nargs="+", default=["fp32"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    results = {"device": device_name(args.device), "torch": torch.__version__,
               "date": datetime.date.today().isoformat(), "runs": []}
    for precision in args.precision:
        model = random_model(args.device, precision)
        for b in args.batch:
            results["runs"].append({"precision": precision, **bench_generate(model, b, args.steps)})
        results["runs"].append({"precision": precision, "encoder": bench_encode(model)})
    print(f"{results['device']}, torch {results['torch']}, {results['date']}\n")
    print("| precision | batch | samples/s | ms/step | TFLOP/s |\n|---|---|---|---|---|")
    for r in results["runs"]:
        if "batch" in r and "encoder" not in r:
            print(f"| {r['precision']} | {r['batch']} | {r['samples_per_s']:,.0f} | {r['ms_per_step']} | {r['tflops']} |")
    for r in results["runs"]:
        if "encoder" in r:
            print(f"\nencoder ({r['precision']}): {r['encoder']['x_real_time']}x real time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
