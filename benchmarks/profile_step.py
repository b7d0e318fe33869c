"""Where a generation step spends its GPU time: torch.profiler over whole CUDA-graph chunks.

    python benchmarks/profile_step.py --precision bf16 --kernels triton --batch 4096

Prints the GPU kernels of 64 steps, the most expensive first (a GPU is needed)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from onss_tui.bench import random_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--kernels", default="triton")
    ap.add_argument("--batch", type=int, nargs="+", default=[4096])
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()
    for batch in args.batch:
        model = random_model("cuda", args.precision).with_precision(args.precision, kernels=args.kernels)
        enc = np.random.default_rng(1).normal(0, 3, (batch, 2, 16)).astype(np.float32)
        gen = model.generation(enc)
        with model.precision_scope():
            gen.advance(256)  # eager chunk, capture, replays
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                gen.advance(64)
                torch.cuda.synchronize()
        print(f"\n{args.precision} {args.kernels} batch {batch}: GPU time of 64 steps")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=60))
        del gen, model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
