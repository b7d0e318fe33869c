"""Time the fused gate / res_skip kernels alone over tile shapes (a GPU is needed).

    python benchmarks/tune_tiles.py --batch 1 64 4096

For each batch and candidate (BM, BN, BK, warps, stages) it prints microseconds per launch, the
TFLOP/s and the bytes moved to and from L2 (MB, and TB/s over the time), for gate (and its variants
of the same sums in benchmarks/sweep_kernels.py: one loop over both ring taps, one dot of twice the
width; and the sums started from the conditioning, which frees the registers 256 x 64 tiles need),
res_skip, and up to 64 voices the whole layer split-K 0 to 24 ways. _blocks() and _split() in
onss_tui/engine/kernels.py are then set from the winners (no autotuning at run time: the tiles
fix the summation order, which bit-exact resumes rely on). Every case goes through the engine's
own wrappers, the variants through sweep_kernels.gate with the engine's tiles and launcher
(tests/test_tile_sweep.py runs each once in the interpreter)."""

from __future__ import annotations

import argparse
import itertools

import sweep_kernels  # benchmarks/, beside this file (a script's folder is on sys.path)
import torch
from triton.testing import do_bench

from onss_tui.engine import kernels as K
from onss_tui.vocab import torch_dtype

C, S, D = 512, 256, 64


def gate_case(batch, dtype, cfg, one_ring=False, wide=False, cond_first=False, device="cuda"):
    """(one launch of the gate as the engine makes it, or of a variant of it, its FLOPs)."""
    buf = torch.randn(2 * D, batch, C, device=device).to(dtype)
    l = torch.randn(batch, C, device=device).to(dtype)  # below float32 the engine stages x[t] in dtype
    w = (torch.randn(3 * C, 2 * C, device=device) / 40).to(dtype)
    cond = torch.randn(batch, 2 * C, device=device)
    g = torch.empty(batch, C, device=device, dtype=dtype)
    t = torch.tensor(77, device=device)
    if one_ring or wide or cond_first:
        launch = lambda: sweep_kernels.gate(buf, t, l, w, cond, D, out=g, blocks=cfg,  # noqa: E731
                                            one_ring=one_ring, wide=wide, cond_first=cond_first)
    else:
        launch = lambda: K.gate(buf, t, l, w, cond, D, out=g, blocks=cfg)  # noqa: E731
    return launch, batch * 3 * C * 2 * C * 2


def res_skip_case(batch, dtype, cfg, device="cuda"):
    g = torch.randn(batch, C, device=device).to(dtype)
    w = (torch.randn(C, C + S, device=device) / 20).to(dtype)
    b = torch.randn(C + S, device=device)
    l = torch.randn(batch, C, device=device)
    skip = torch.randn(batch, S, device=device)
    buf = torch.zeros(2 * D, batch, C, device=device, dtype=dtype)
    t = torch.tensor(77, device=device)
    lq = l.to(dtype)  # the staged input (l itself in float32)
    return (lambda: K.res_skip(g, w, b, l, skip, buf, t, D, True, blocks=cfg, lq=lq)), batch * C * (C + S) * 2


def layer_case(batch, dtype, split, device="cuda"):
    """One whole layer (gate + res_skip, or the split-K pair) as the engine launches it."""
    buf = torch.randn(2 * D, batch, C, device=device).to(dtype)
    l = torch.randn(batch, C, device=device)
    w = (torch.randn(3 * C, 2 * C, device=device) / 40).to(dtype)
    cond = torch.randn(batch, 2 * C, device=device)
    w_rs, b_rs = (torch.randn(C, C + S, device=device) / 20).to(dtype), torch.randn(C + S, device=device)
    skip = torch.randn(batch, S, device=device)
    t = torch.tensor(77, device=device)
    lq = l.to(dtype)
    return lambda: K.layer(buf, t, l, w, cond, w_rs, b_rs, skip, D, True, split=split, lq=lq)


def traffic(kernel: str, batch: int, cfg, dtype=torch.bfloat16, split: int = 6, residual: bool = True) -> int:
    """Bytes one launch moves between the SMs and the L2 cache (loads and stores, every program):
    kernel "gate", "gate_split" or "res_skip" (with ``split``: reading the split gate's partial
    sums; ``residual`` False: the last layer's). The operands are re-read by every tile that needs
    them: the taps once per column tile (C / BN), the weights once per row tile (B / BM), which is
    what bigger tiles save. The layer input x[t] is read in the compute dtype (the engine stages
    it so below float32). tests/test_kernels.py counts the loads and stores of the kernels in
    Triton's interpreter and checks this against them."""
    bm, bn = cfg[0], cfg[1]
    e = torch.tensor([], dtype=dtype).element_size()  # the ring's, the weights', g's and staged x[t]'s element
    f = 4  # float32: the layer input l, the conditioning, the sums
    staged = e < f
    row_tiles = -(-batch // bm)
    if kernel == "gate":  # per column tile: the taps of every voice, the conditioning, g; the weights a row tile
        return C // bn * (batch * (3 * C * e + 2 * bn * f + bn * e) + row_tiles * (3 * C * 2 * bn * e + 8))
    if kernel == "gate_split":  # each of the 3C / ks programs a tile reads one tap's ks channels
        ks = 3 * C // split
        taps = batch * 3 * C * e
        return C // bn * (taps + split * (batch * 2 * bn * f + row_tiles * (ks * 2 * bn * e + 8)))
    assert kernel == "res_skip", kernel
    r = C if residual else 0
    bn = min(bn, S)
    g = batch * C * 2 * (split + 1) * f if split else batch * C * e  # partial sums and conditioning, or g
    out = (r + S) // bn * (g + row_tiles * (C * bn * e + bn * f))  # + the weights and the bias
    # residual tiles: l in, x[t] to the ring, the new l out (and staged); skip tiles: the skip sum in and out
    out += r // bn * (batch * bn * (f + e + f + e * staged) + row_tiles * 8)
    out += S // bn * batch * bn * 2 * f
    if not residual:  # the last layer's skip tiles copy x[t] (staged, else l) to the ring in 2 BN-channel slices
        out += S // bn * (batch * 2 * bn * ((e if staged else f) + e) + row_tiles * 8)
    return out


def us(launch) -> float:
    return do_bench(launch, warmup=20, rep=100) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 4096])
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--focus", action="store_true",
                    help="above 256 voices only the tiles the L2-traffic model singles out (a few minutes' sweep)")
    args = ap.parse_args()
    dtype = torch_dtype(args.dtype)
    for batch in args.batch:
        if batch <= 64:  # split-K against the unsplit pair (K._split picks 6 up to 16 voices)
            for split in (0, 3, 6, 12, 24):
                print(f"layer {args.dtype} batch {batch} split {split}: {us(layer_case(batch, dtype, split)):.1f} us")
        if batch <= 16:  # BK stays 64 (it fixes the summation order); the split is timed above
            cands = [(16, bn, 64, w, s) for bn, w, s in itertools.product([16, 32], [2, 4], [2, 3])]
        elif batch <= 256:
            cands = [(bm, bn, 64, 4, s) for bm, bn, s in itertools.product([16, 32], [32, 64], [2, 3])]
        else:
            cands = list(itertools.product([64, 128], [64, 128], [64], [4, 8], [3, 4]))
            cands += [(256, 64, 64, 8, 3), (128, 64, 32, 4, 4), (128, 64, 32, 8, 5)]
            cands += [(128, 256, 64, 8, 3), (64, 256, 64, 8, 3)]  # res_skip only: 3 column tiles, not 12
            if args.focus:  # the engine's tile, and the ones that move fewer bytes (docs/benchmarks.md)
                cands = [(128, 64, 64, 8, 3), (128, 64, 64, 8, 4), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3),
                         (64, 256, 64, 8, 3)]
        best = {}
        for name, case in [("gate", gate_case), ("res_skip", res_skip_case)]:
            best[name] = sweep(name, case, batch, dtype, cands, args.dtype)
        variants = [("gate one-ring", dict(one_ring=True)), ("gate wide", dict(wide=True)),
                    ("gate one-ring wide", dict(one_ring=True, wide=True)), ("gate cond-first", dict(cond_first=True))]
        for name, flags in variants:  # at the plain gate's two best tiles (and the engine's own)
            tiles = list(dict.fromkeys(best["gate"][:2] + [K._tiles(K._blocks(batch))]))
            if "cond_first" in flags and batch > 256:  # its reason to be: 256 x 64 without spills (172 MB, not 222)
                tiles.append((256, 64, 64, 8, 3))
            sweep(name, lambda b, dt, cfg, device, flags=flags: gate_case(b, dt, cfg, device=device, **flags), batch,
                  dtype, tiles, args.dtype, kernel="gate")


def sweep(name, case, batch, dtype, cands, label, kernel=None, device="cuda") -> list:
    """Time ``case`` at each tile; print the six fastest, each with its FLOP rate and the bytes it
    moves to and from L2 (:func:`traffic`) over its time; return the tiles, fastest first. A
    layer bound by L2 shows about the same TB/s at every tile, its time following the bytes."""
    kernel = kernel or name
    rows = []
    for cfg in cands:
        if cfg[1] > (256 if kernel == "res_skip" else 128):  # a gate tile of BN 256 holds 2 x 256 columns
            continue
        try:
            launch, flop = case(batch, dtype, cfg, device=device)
            took = us(launch)
        except Exception as e:  # a tile that does not fit in shared memory
            print(f"{name} batch {batch} {cfg}: {type(e).__name__}")
            continue
        rows.append((took, cfg, flop / took / 1e6, traffic(kernel, batch, cfg, dtype, split=0) / 1e6))
    rows.sort()
    for took, cfg, tf, mb in rows[:6]:
        print(f"{name} {label} batch {batch} {cfg}: {took:.1f} us  {tf:.0f} TFLOP/s  {mb:.0f} MB "
              f"{mb / took:.2f} TB/s", flush=True)
    return [cfg for _, cfg, _, _ in rows]

if __name__ == "__main__":
    main()
