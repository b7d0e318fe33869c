"""Time the fused gate / res_skip kernels alone over tile shapes (a GPU is needed).

    python benchmarks/tune_tiles.py --batch 1 64 4096

For each batch and candidate (BM, BN, BK, warps, stages) it prints microseconds per launch and the
TFLOP/s, for gate (and its one-ring-loop variant, the same sums in one pipeline), res_skip, and
up to 64 voices the whole layer split-K 0 to 24 ways; _blocks() in onss_tui/model/kernels.py is then set from the winners (no autotuning at run
time: the tiles fix the summation order, which bit-exact resumes rely on)."""

from __future__ import annotations

import argparse
import itertools

import torch
import triton
from triton.testing import do_bench

from onss_tui.model import kernels as K

C, S, D = 512, 256, 64


def gate_us(batch, dtype, cfg, one_ring=False):
    bm, bn, bk, warps, stages = cfg
    buf = torch.randn(2 * D, batch, C, device="cuda").to(dtype)
    l = torch.randn(batch, C, device="cuda")
    w = (torch.randn(3 * C, 2 * C, device="cuda") / 40).to(dtype)
    cond = torch.randn(batch, 2 * C, device="cuda")
    g = torch.empty(batch, C, device="cuda", dtype=dtype)
    t = torch.tensor(77, device="cuda")
    prec, widen = K._precision(w)
    grid = (triton.cdiv(batch, bm), C // bn)

    def go():
        K._gate_kernel[grid](buf, t, l, w, cond, g, batch, D, cond.stride(0), C=C, BM=bm, BN=bn, BK=bk,
                             PRECISION=prec, WIDEN=widen, ONE_RING=one_ring, num_warps=warps, num_stages=stages)
    return do_bench(go, warmup=20, rep=100) * 1000, batch * 3 * C * 2 * C * 2


def res_skip_us(batch, dtype, cfg):
    bm, bn, bk, warps, stages = cfg
    g = torch.randn(batch, C, device="cuda").to(dtype)
    w = (torch.randn(C, C + S, device="cuda") / 20).to(dtype)
    b = torch.randn(C + S, device="cuda")
    l = torch.randn(batch, C, device="cuda")
    skip = torch.randn(batch, S, device="cuda")
    buf = torch.zeros(2 * D, batch, C, device="cuda", dtype=dtype)
    t = torch.tensor(77, device="cuda")
    prec, widen = K._precision(w)
    grid = (triton.cdiv(batch, bm), (C + S) // bn)

    def go():
        K._res_skip_kernel[grid](g, w, b, l, skip, buf, t, batch, D, R=C, S=S, C=C, BM=bm, BN=bn, BK=bk,
                                 PRECISION=prec, WIDEN=widen, STORE_INPUT=False, num_warps=warps, num_stages=stages)
    return do_bench(go, warmup=20, rep=100) * 1000, batch * C * (C + S) * 2


def layer_us(batch, dtype, split):
    """One whole layer (gate + res_skip, or the split-K pair) as the engine launches it."""
    buf = torch.randn(2 * D, batch, C, device="cuda").to(dtype)
    l = torch.randn(batch, C, device="cuda")
    w = (torch.randn(3 * C, 2 * C, device="cuda") / 40).to(dtype)
    cond = torch.randn(batch, 2 * C, device="cuda")
    w_rs, b_rs = (torch.randn(C, C + S, device="cuda") / 20).to(dtype), torch.randn(C + S, device="cuda")
    skip = torch.randn(batch, S, device="cuda")
    t = torch.tensor(77, device="cuda")
    return do_bench(lambda: K.layer(buf, t, l, w, cond, w_rs, b_rs, skip, D, True, split=split),
                    warmup=20, rep=100) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 4096])
    ap.add_argument("--dtype", default="bf16")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    for batch in args.batch:
        if batch <= 64:  # split-K against the unsplit pair (K._split picks 6 up to 16 voices)
            for split in (0, 3, 6, 12, 24):
                print(f"layer {args.dtype} batch {batch} split {split}: {layer_us(batch, dtype, split):.1f} us")
        if batch <= 16:  # BK stays 64 (it fixes the summation order); the split is timed above
            cands = [(16, bn, 64, w, s) for bn, w, s in itertools.product([16, 32], [2, 4], [2, 3])]
        elif batch <= 256:
            cands = [(bm, bn, 64, 4, s) for bm, bn, s in itertools.product([16, 32], [32, 64], [2, 3])]
        else:
            cands = [(bm, bn, bk, w, s) for bm, bn, bk, w, s in itertools.product([64, 128], [64, 128], [64], [4, 8], [3, 4])]
            cands += [(256, 64, 64, 8, 3), (128, 64, 32, 4, 4), (128, 64, 32, 8, 5)]
        one_ring = lambda b, dt, cfg: gate_us(b, dt, cfg, one_ring=True)  # noqa: E731 - both ring taps, one loop
        for name, fn in [("gate", gate_us), ("gate one-ring", one_ring), ("res_skip", res_skip_us)]:
            rows = []
            for cfg in cands:
                if name == "res_skip" and cfg[1] > 256:
                    continue
                try:
                    us, flop = fn(batch, dtype, cfg)
                except Exception as e:  # a tile that does not fit in shared memory
                    print(f"{name} batch {batch} {cfg}: {type(e).__name__}")
                    continue
                rows.append((us, cfg, flop / us / 1e6))
            for us, cfg, tf in sorted(rows)[:6]:
                print(f"{name} {args.dtype} batch {batch} {cfg}: {us:.1f} us  {tf:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
