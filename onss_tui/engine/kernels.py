"""Fused Triton kernels for one decoder layer of one generation step (the GPU engine's fast path).

One layer of the incremental decoder (:mod:`onss_tui.engine.fastgen`), per step, for B voices with
the layer input ``l`` [B, 512] (float32) and the layer's ring buffer ``buf`` [2d, B, 512]:

    taps  = [buf[t mod 2d] | buf[(t + d) mod 2d] | l]          [B, 1536]   x[t-2d], x[t-d], x[t]
    z     = taps @ W_dil + cond                                [B, 1024]   cond: per frame, bias folded in
    g     = sigmoid(z[:, :512]) * tanh(z[:, 512:])             [B, 512]
    rs    = g @ W_rs + b_rs                                    [B, 768]    (the last layer: skip only, 256)
    buf[t mod 2d] <- l ;  l += rs[:, :512] ;  skip += rs[:, 512:]

Plain PyTorch spends about fifteen kernels on that (two gathers, a concatenation, two matmuls, the
casts, the gate, the sums, the ring-buffer write); at large batches inside a CUDA graph the launches
and the round trips of [B, 1024] intermediates through memory cost as much as the maths. Here it
is two kernels:

    gate       reads the three taps straight from the ring buffer, at slots computed from the
               device step counter (no gather, no concatenation), multiplies by W_dil with
               float32 accumulation, adds the conditioning and applies the gate; writes g only.
    res_skip   multiplies g by W_rs, adds the bias, writes the layer input into the ring buffer
               (after ``gate`` has read that slot: the two kernels run in stream order) and adds
               the residual and skip parts to ``l`` and ``skip`` in place.

Below float32 the layer input also travels in the compute dtype (``lq``: ``start`` and each
``res_skip`` store it next to the float32 sum), so the gate reads x[t] in half the bytes; the gate
would round it to that dtype itself anyway, so the numbers are the same.

Up to 16 voices the gate splits its 1536-long sum over 6 programs a tile (split-K, each within
one tap: 192 programs instead of 32 to read the layer's weights with), and res_skip adds the six
partial sums, the conditioning and the gate as it reads them (:func:`layer`); the order of the
sums is fixed, so the result is as deterministic as the unsplit kernels.

The rest of the step is five more launches (PyTorch: dozens, most of them the integer hash of
the counter-based uniform; at a small batch the launches, not the maths, set the pace):

    start      startconv over x[t-2], x[t-1], x[t]; stores x[t] in its ring
    dense      skip_start; then out1 (relu, + conditioning, relu) and logits: the float32 layers,
               on the tensor cores in three TF32 passes, tiled over their outputs
    sample     softmax, CDF, the uniform U(key, t) (rng's uint32 hash, recomputed bit for bit)
               and the inverse-CDF class; writes codes[:, t] and the next input

so a step is 66 launches (with the counter's increment) instead of about 400 in fp32 and
520 in bf16 (PyTorch ops counted with torch.profiler).

Each program owns a [BM voices x BN channels] tile; ``gate`` keeps two accumulators, the sigmoid
half (channels c) and the tanh half (channels 512 + c), so the gate is applied in registers.

Block sizes depend only on the batch and the mode, never on timing (no autotuning): the
summation order, and so every sample, is the same in every run on the same device, which the
bit-exact resume relies on.

On the CPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``), which is how the
tests cover them. The interpreter cannot multiply bfloat16 tiles, so there (only) bfloat16 tiles
are widened to float32 before ``tl.dot``: the products of bfloat16 values are exact in float32,
so this is the same arithmetic as the tensor cores' bfloat16 multiply with float32 accumulation.
"""

from __future__ import annotations

import os

import torch

__all__ = ["available", "interpreting", "start", "gate", "res_skip", "layer", "dense", "head", "sample",
           "why_unavailable"]

try:  # Triton comes with the CUDA builds of torch; the CPU build has none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1: tests)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def why_unavailable(device: torch.device) -> str | None:
    """None when the fused kernels can run on ``device``; otherwise the reason, with the fix."""
    if triton is None:
        return "Triton is not installed (it comes with the CUDA builds of torch; or `pip install triton`)"
    if device.type != "cuda" and not interpreting():
        return f"the fused kernels run on a CUDA GPU, not on {device.type} (use kernels: torch there)"
    return None


def available(device: torch.device) -> bool:
    return why_unavailable(device) is None


if triton is not None:

    @triton.jit
    def _gate_dots(x, w_ptr, wk, cols, acc_s, acc_t, C: tl.constexpr, PRECISION: tl.constexpr, WIDEN: tl.constexpr):
        """acc_s += x @ W[wk, cols] and acc_t += x @ W[wk, C + cols] (W: [3C, 2C]; wk: the rows).
        Returns both accumulators."""
        w_rows = w_ptr + wk[:, None] * (2 * C)
        ws = tl.load(w_rows + cols[None, :])
        wt = tl.load(w_rows + C + cols[None, :])
        if WIDEN:
            x, ws, wt = x.to(tl.float32), ws.to(tl.float32), wt.to(tl.float32)
        return tl.dot(x, ws, acc_s, input_precision=PRECISION), tl.dot(x, wt, acc_t, input_precision=PRECISION)

    @triton.jit
    def _gate_kernel(buf_ptr, t_ptr, l_ptr, w_ptr, cond_ptr, g_ptr,
                     B, d, cond_stride,
                     C: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                     PRECISION: tl.constexpr, WIDEN: tl.constexpr):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)  # voices
        cols = tl.program_id(1) * BN + tl.arange(0, BN)  # gate channels in [0, C)
        live = rows[:, None] < B
        t = tl.load(t_ptr)  # int64 step counter, on the device
        cond = cond_ptr + rows[:, None] * cond_stride + cols[None, :]
        acc_s = tl.zeros((BM, BN), dtype=tl.float32)  # z[:, cols]       -> sigmoid
        acc_t = tl.zeros((BM, BN), dtype=tl.float32)  # z[:, C + cols]   -> tanh
        for tap in tl.static_range(0, 3):  # x[t-2d], x[t-d], x[t]
            for k0 in range(0, C, BK):
                ks = k0 + tl.arange(0, BK)
                if tap < 2:  # x[t - (2 - tap) d] sits in slot (t + tap d) mod 2d
                    x = tl.load(buf_ptr + ((t + tap * d) % (2 * d)) * B * C + rows[:, None] * C + ks[None, :],
                                mask=live, other=0.0)
                else:
                    x = tl.load(l_ptr + rows[:, None] * C + ks[None, :], mask=live, other=0.0)
                    x = x.to(w_ptr.dtype.element_ty)  # the layer input, in the compute dtype
                acc_s, acc_t = _gate_dots(x, w_ptr, tap * C + ks, cols, acc_s, acc_t, C, PRECISION, WIDEN)
        zs = acc_s + tl.load(cond, mask=live, other=0.0)
        zt = acc_t + tl.load(cond + C, mask=live, other=0.0)
        g = tl.sigmoid(zs) * (2.0 * tl.sigmoid(2.0 * zt) - 1.0)  # tanh(z) = 2 sigmoid(2z) - 1
        tl.store(g_ptr + rows[:, None] * C + cols[None, :], g.to(g_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _gate_split_kernel(buf_ptr, t_ptr, l_ptr, w_ptr, z_ptr, B, d,
                           C: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                           KS: tl.constexpr, PRECISION: tl.constexpr, WIDEN: tl.constexpr):
        """Split-K gate for small batches: program (i, j, p) sums rows [p KS, (p + 1) KS) of the
        taps' 1536 into z_ptr[p] = partial z[:, cols] and z[:, C + cols] (float32; the
        conditioning, the sum over p and the gate are res_skip's). KS divides C: one tap a program."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)
        p = tl.program_id(2)
        live = rows[:, None] < B
        tap = (p * KS) // C  # 0: x[t-2d], 1: x[t-d], 2: x[t]
        first = p * KS - tap * C  # this program's first channel within its tap
        t = tl.load(t_ptr)
        acc_s = tl.zeros((BM, BN), dtype=tl.float32)
        acc_t = tl.zeros((BM, BN), dtype=tl.float32)
        if tap < 2:
            slot = (t + tap * d) % (2 * d)
            for k0 in range(0, KS, BK):
                ks = first + k0 + tl.arange(0, BK)
                x = tl.load(buf_ptr + slot * B * C + rows[:, None] * C + ks[None, :], mask=live, other=0.0)
                acc_s, acc_t = _gate_dots(x, w_ptr, tap * C + ks, cols, acc_s, acc_t, C, PRECISION, WIDEN)
        else:
            for k0 in range(0, KS, BK):
                ks = first + k0 + tl.arange(0, BK)
                x = tl.load(l_ptr + rows[:, None] * C + ks[None, :], mask=live, other=0.0)
                x = x.to(w_ptr.dtype.element_ty)  # the layer input, in the compute dtype
                acc_s, acc_t = _gate_dots(x, w_ptr, tap * C + ks, cols, acc_s, acc_t, C, PRECISION, WIDEN)
        out = z_ptr + p * B * 2 * C + rows[:, None] * (2 * C) + cols[None, :]
        tl.store(out, acc_s, mask=live)
        tl.store(out + C, acc_t, mask=live)

    @triton.jit
    def _res_skip_kernel(g_ptr, w_ptr, b_ptr, l_ptr, lq_ptr, skip_ptr, buf_ptr, t_ptr, cond_ptr,
                         B, d, cond_stride,
                         R: tl.constexpr, S: tl.constexpr, C: tl.constexpr,
                         BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                         PRECISION: tl.constexpr, WIDEN: tl.constexpr, STORE_INPUT: tl.constexpr,
                         SPLIT: tl.constexpr, STAGE: tl.constexpr):
        """lq_ptr: the layer input in the compute dtype (the staged copy, or l itself). STAGE: also
        store the next layer's input there."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)  # output channels in [0, R + S)
        live = rows[:, None] < B
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, C, BK):
            ks = k0 + tl.arange(0, BK)
            if SPLIT == 0:  # g from the gate kernel
                g = tl.load(g_ptr + rows[:, None] * C + ks[None, :], mask=live, other=0.0)
            else:  # g from the split gate's SPLIT partial sums (g_ptr: [SPLIT, B, 2C]), in a fixed order
                zh = rows[:, None] * (2 * C) + ks[None, :]
                zs = tl.load(g_ptr + zh, mask=live, other=0.0)
                zt = tl.load(g_ptr + zh + C, mask=live, other=0.0)
                for p in tl.static_range(1, SPLIT):
                    zs += tl.load(g_ptr + p * B * 2 * C + zh, mask=live, other=0.0)
                    zt += tl.load(g_ptr + p * B * 2 * C + zh + C, mask=live, other=0.0)
                cz = cond_ptr + rows[:, None] * cond_stride + ks[None, :]
                zs += tl.load(cz, mask=live, other=0.0)
                zt += tl.load(cz + C, mask=live, other=0.0)
                g = (tl.sigmoid(zs) * (2.0 * tl.sigmoid(2.0 * zt) - 1.0)).to(w_ptr.dtype.element_ty)
            w = tl.load(w_ptr + ks[:, None] * (R + S) + cols[None, :])
            if WIDEN:
                g, w = g.to(tl.float32), w.to(tl.float32)
            acc = tl.dot(g, w, acc, input_precision=PRECISION)
        acc += tl.load(b_ptr + cols)[None, :]
        if STORE_INPUT:  # the last layer (R = 0): its S / BN programs store x[t] in 2 BN-channel slices
            t = tl.load(t_ptr)
            lcols = tl.program_id(1) * (2 * BN) + tl.arange(0, 2 * BN)
            lhere = rows[:, None] * C + lcols[None, :]
            lold = tl.load(lq_ptr + lhere, mask=live, other=0.0)
            tl.store(buf_ptr + (t % (2 * d)) * B * C + lhere, lold.to(buf_ptr.dtype.element_ty), mask=live)
        if tl.program_id(1) * BN < R:  # a residual tile (BN divides R and S: no tile straddles)
            t = tl.load(t_ptr)
            here = rows[:, None] * C + cols[None, :]
            old = tl.load(l_ptr + here, mask=live, other=0.0)  # this layer's input x[t]
            tl.store(buf_ptr + (t % (2 * d)) * B * C + here, old.to(buf_ptr.dtype.element_ty), mask=live)
            new = old + acc  # the next layer's input
            tl.store(l_ptr + here, new, mask=live)
            if STAGE:
                tl.store(lq_ptr + here, new.to(lq_ptr.dtype.element_ty), mask=live)
        else:
            shere = rows[:, None] * S + (cols[None, :] - R)
            tl.store(skip_ptr + shere, tl.load(skip_ptr + shere, mask=live, other=0.0) + acc, mask=live)

    @triton.jit
    def _mix32(x):
        """The rng module's 32-bit finaliser on uint32 lanes (products wrap modulo 2^32)."""
        x = x ^ (x >> 16)
        x = ((x * 0x7FEB352D) & 0xFFFFFFFF).to(tl.uint32)
        x = x ^ (x >> 15)
        x = ((x * 0x846CA68B) & 0xFFFFFFFF).to(tl.uint32)
        return x ^ (x >> 16)

    @triton.jit
    def _draw(logits, keys_ptr, rows, live1, t, Q: tl.constexpr):
        """The class drawn for each row of ``logits`` [BM, Q] at step ``t``: the inverse CDF of its
        softmax at U(key, t), recomputed here bit for bit as rng.uniform(keys, t) makes it."""
        e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
        cdf = tl.cumsum(e / tl.sum(e, axis=1)[:, None], axis=1)  # [BM, Q]
        key = tl.load(keys_ptr + rows, mask=live1, other=0).to(tl.uint32)
        h = _mix32(key ^ _mix32((t & 0xFFFFFFFF).to(tl.uint32) ^ 0x85EBCA6B))
        h = _mix32(h ^ (t >> 32).to(tl.uint32))
        u = (h >> 8).to(tl.float32) * (1.0 / 16777216.0)
        return tl.minimum(tl.sum((cdf < u[:, None]).to(tl.int32), axis=1), Q - 1)

    @triton.jit
    def _rows_times(x_ptr, rows, live, w_ptr, cols, K: tl.constexpr, N: tl.constexpr, BK: tl.constexpr,
                    RELU_IN: tl.constexpr, PRECISION: tl.constexpr, SHARED: tl.constexpr):
        """relu?(x[rows]) @ w[:, cols] as a float32 [BM, BN] tile, for x [B, K] and w [K, N] float32,
        both row-major, in BK-slices. SHARED: x was written by other programs of a persistent
        launch, so it is read from L2 (``.cg``), never from a stale L1 line."""
        acc = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
        for k0 in range(0, K, BK):
            ks = k0 + tl.arange(0, BK)
            here = x_ptr + rows[:, None] * K + ks[None, :]
            if SHARED:
                x = tl.load(here, mask=live, other=0.0, cache_modifier=".cg")
            else:
                x = tl.load(here, mask=live, other=0.0)
            if RELU_IN:
                x = tl.maximum(x, 0.0)
            acc = tl.dot(x, tl.load(w_ptr + ks[:, None] * N + cols[None, :]), acc, input_precision=PRECISION)
        return acc

    @triton.jit
    def _start_kernel(taps_ptr, t_ptr, x_ptr, w_ptr, b_ptr, l_ptr, lq_ptr, B, C: tl.constexpr, BM: tl.constexpr,
                      STAGE: tl.constexpr):
        """startconv over x[t-2], x[t-1] (the ring ``taps``) and x[t]: l [B, C] (STAGE: and its copy
        in the compute dtype, lq); stores x[t] in the ring."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        live1 = rows < B
        t = tl.load(t_ptr)
        x2 = tl.load(taps_ptr + (t % 2) * B + rows, mask=live1, other=0.0)[:, None]  # x[t-2]
        x1 = tl.load(taps_ptr + ((t + 1) % 2) * B + rows, mask=live1, other=0.0)[:, None]  # x[t-1]
        x0 = tl.load(x_ptr + rows, mask=live1, other=0.0)  # x[t]
        ks = tl.arange(0, C)
        l = x2 * tl.load(w_ptr + ks)[None, :] + x1 * tl.load(w_ptr + C + ks)[None, :]
        l = l + x0[:, None] * tl.load(w_ptr + 2 * C + ks)[None, :]
        l = l + tl.load(b_ptr + ks)[None, :]
        tl.store(l_ptr + rows[:, None] * C + ks[None, :], l, mask=live1[:, None])
        if STAGE:
            tl.store(lq_ptr + rows[:, None] * C + ks[None, :], l.to(lq_ptr.dtype.element_ty), mask=live1[:, None])
        tl.debug_barrier()  # every thread of the program has read x[t-2] before it is overwritten
        tl.store(taps_ptr + (t % 2) * B + rows, x0, mask=live1)

    @triton.jit
    def _dense_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, B, bias_stride,
                      K: tl.constexpr, N: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      RELU_IN: tl.constexpr, RELU_OUT: tl.constexpr, PRECISION: tl.constexpr):
        """out [B, N] = relu?(relu?(x) @ w + bias), float32, for the float32 layers around the stack
        (skip_start, out1, logits); ``bias`` rows are ``bias_stride`` apart (0: one row for all)."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)
        live = rows[:, None] < B
        acc = _rows_times(x_ptr, rows, live, w_ptr, cols, K, N, BK, RELU_IN, PRECISION, False)
        acc += tl.load(bias_ptr + rows[:, None] * bias_stride + cols[None, :], mask=live, other=0.0)
        if RELU_OUT:
            acc = tl.maximum(acc, 0.0)
        tl.store(out_ptr + rows[:, None] * N + cols[None, :], acc, mask=live)

    @triton.jit
    def _sample_kernel(logits_ptr, keys_ptr, t_ptr, codes_ptr, prev_ptr, B, total,
                       Q: tl.constexpr, BM: tl.constexpr):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        live1 = rows < B
        logits = tl.load(logits_ptr + rows[:, None] * Q + tl.arange(0, Q)[None, :], mask=live1[:, None], other=0.0)
        t = tl.load(t_ptr)
        k = _draw(logits, keys_ptr, rows, live1, t, Q)
        tl.store(codes_ptr + rows.to(tl.int64) * total + t, k.to(tl.uint8), mask=live1)
        tl.store(prev_ptr + rows, (k.to(tl.float32) - 128.0) / 128.0, mask=live1)


def _blocks(batch: int, w: torch.Tensor | None = None) -> tuple[int, int, int, int]:
    """(BM, BN, BK, warps) from the batch and the weights' dtype alone. BK is fixed for them (it
    sets the summation order).

    Small batches read the weights (3 MB a layer in bf16) with few voices to use them on: narrow
    tiles spread that read over many SMs (BN = 16: 32 programs for ``gate`` at batch 1). Large
    batches are bound by the bytes the tiles re-read from L2 (docs/benchmarks.md): 128 x 64, the
    largest tiles whose epilogue does not spill registers on sm_90. Up to 64 voices, 16-voice row
    tiles measured best on an H100 (benchmarks/tune_tiles.py: ``gate`` 18.1 us against 19.9 us for
    64 x 32 at 64 voices; BK 128 was faster still at batch 1, but BK stays fixed)."""
    if interpreting():  # the interpreter is numpy per program: few, large tiles
        return max(16, min(64, triton.next_power_of_2(batch))), 256, 512, 1
    if batch <= 16:
        return 16, 16, 64, 4
    if batch <= 64:
        return 16, 64, 64, 4
    bm = min(128, triton.next_power_of_2(batch))
    if bm >= 128 and w is not None and _precision(w)[0] == "ieee" and w.dtype == torch.float32:
        return bm, 64, 32, 8  # float32 on the CUDA cores: BK 64 spilled 566 instructions' worth on sm_90
    return bm, 64, 64, 8 if bm >= 128 else 4


def _precision(w: torch.Tensor) -> tuple[str, bool]:
    """tl.dot's input precision (TF32 only where torch allows it for matmuls) and whether to widen."""
    tf32 = w.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return ("tf32" if tf32 else "ieee"), interpreting() and w.dtype == torch.bfloat16


def _launch(kernel, grid, *args, **meta) -> None:
    """Every launch goes through here (a test records them to compile each for a Hopper GPU).
    Fused multiply-adds are asked for by name: Triton 3.9 contracts a * b + c by default and 3.10
    will not, and the samples (so a resume's bit-exactness) depend on it."""
    kernel[grid](*args, enable_fp_fusion=True, **meta)


def _fp32_precision() -> str:
    """tl.dot's input precision for the float32 layers around the stack (startconv's skip, out1,
    logits): TF32 where torch allows it; else three TF32 passes (``tf32x3``: about float32's
    accuracy on the tensor cores; plain float32 dots run on the CUDA cores, many times slower).
    The interpreter multiplies in float32 whatever is asked."""
    if torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee" if interpreting() else "tf32x3"


def _tiles(blocks: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    """(BM, BN, BK, warps, stages) from _blocks() or a test's 4-tuple (3 pipeline stages)."""
    bm, bn, bk, warps, *stages = blocks
    return bm, bn, bk, warps, stages[0] if stages else 3


def gate(buf: torch.Tensor, t: torch.Tensor, l: torch.Tensor, w: torch.Tensor, cond: torch.Tensor,
         d: int, out: torch.Tensor | None = None, blocks: tuple[int, ...] | None = None) -> torch.Tensor:
    """g [B, 512] in ``w``'s dtype from the ring buffer ``buf`` [2d, B, 512], the device step
    ``t`` (int64 scalar), the layer input ``l`` [B, 512] (float32, or its copy already in ``w``'s
    dtype: the engine's staged input, half the bytes to read), ``w`` [1536, 1024] and the
    layer's conditioning ``cond`` [B, 1024] float32 (rows may be strided: a column slice of the
    all-layer conditioning). ``blocks`` overrides (BM, BN, BK, warps[, stages]). (Variants of
    this kernel for the tile sweeps: benchmarks/sweep_kernels.py.)"""
    two_d, batch, c = buf.shape
    assert two_d == 2 * d and w.shape == (3 * c, 2 * c) and cond.stride(1) == 1, "gate: shapes"
    if out is None:
        out = torch.empty(batch, c, device=l.device, dtype=w.dtype)
    bm, bn, bk, warps, stages = _tiles(blocks or _blocks(batch, w))
    precision, widen = _precision(w)
    grid = (triton.cdiv(batch, bm), c // bn)
    _launch(_gate_kernel, grid, buf, t, l, w, cond, out, batch, d, cond.stride(0),
            C=c, BM=bm, BN=bn, BK=bk, PRECISION=precision, WIDEN=widen, num_warps=warps, num_stages=stages)
    return out


def res_skip(g: torch.Tensor, w: torch.Tensor, b: torch.Tensor, l: torch.Tensor, skip: torch.Tensor,
             buf: torch.Tensor, t: torch.Tensor, d: int, residual: bool,
             blocks: tuple[int, ...] | None = None, cond: torch.Tensor | None = None,
             lq: torch.Tensor | None = None) -> None:
    """In place: ``buf[t mod 2d] <- l`` and ``l += (g @ w + b)[:, :512]`` (when ``residual``),
    ``skip += `` the rest. ``w`` is [512, 768] (or [512, 256] for the last layer, ``residual``
    False: then ``l`` is left alone and stored in the ring buffer). ``blocks`` as for :func:`gate`.
    With ``cond`` (the layer's conditioning), ``g`` is the split-K gate's partial sums
    [split, B, 1024], which this kernel adds up, with ``cond``, before the gate. With ``lq`` (the
    staged input: ``l`` in the compute dtype), the new ``l`` is staged there too, for the next
    layer's gate."""
    batch, c = l.shape
    split = g.shape[0] if cond is not None else 0
    r = c if residual else 0
    s = skip.shape[1]
    assert w.shape == (c, r + s) and l.is_contiguous() and skip.is_contiguous(), "res_skip: shapes"
    assert g.shape == ((split, batch, 2 * c) if split else (batch, c)), "res_skip: g or its partial sums"
    bm, bn, bk, warps, stages = _tiles(blocks or _blocks(batch, w))
    bn = min(bn, s)
    assert residual or c == 2 * s, "res_skip: the last layer stores its input in 2 x BN-channel slices"
    precision, widen = _precision(w)
    if split and blocks is None and not interpreting():  # the partial sums' tiles, 3 stages deep, took
        stages = 2  # 120 KB of shared memory, and registers spilled in TF32 (ptxas for sm_90; a test checks)
    grid = (triton.cdiv(batch, bm), (r + s) // bn)
    if split:
        assert cond is not None, "res_skip: a split gate's partial sums take the conditioning here"
        cond_arg, cond_stride = cond, cond.stride(0)
    else:
        cond_arg, cond_stride = g, 0  # unread without a split
    stage = lq is not None and lq is not l
    assert lq is None or not stage or (lq.shape == l.shape and lq.is_contiguous()), "res_skip: the staged input"
    _launch(_res_skip_kernel, grid, g, w, b, l, lq if stage else l, skip, buf, t, cond_arg, batch, d, cond_stride,
            R=r, S=s, C=c, BM=bm, BN=bn, BK=bk, PRECISION=precision, WIDEN=widen,
            STORE_INPUT=not residual, SPLIT=split, STAGE=stage and residual, num_warps=warps, num_stages=stages)


def _split(batch: int) -> int:
    """How many programs share a gate tile's 1536-long sum (split-K) at this batch; 0: none.
    Up to 16 voices the gate has only 32 tiles (BN 16) to read a layer's 3 MB of weights with,
    so each would walk all 1536 rows alone; 6 splits of 256 rows make 192 programs. Like the
    tiles, it depends on the batch only: the summation order stays the same from run to resume."""
    return 0 if interpreting() or batch > 16 else 6


def layer(buf: torch.Tensor, t: torch.Tensor, l: torch.Tensor, w_dil: torch.Tensor, cond: torch.Tensor,
          w_rs: torch.Tensor, b_rs: torch.Tensor, skip: torch.Tensor, d: int, residual: bool,
          blocks: tuple[int, ...] | None = None, split: int | None = None, lq: torch.Tensor | None = None) -> None:
    """One decoder layer of a step, in place: :func:`gate` then :func:`res_skip`, or at small
    batches (``split``, default :func:`_split`) the split-K gate, whose partial sums res_skip adds
    up (with the conditioning and the gate) as it reads them. ``lq``: the staged input (``l`` in
    the compute dtype, from :func:`start` or the layer before), read by the gate and renewed by
    res_skip; the same numbers as converting ``l`` in the gate, in half the bytes."""
    batch, c = l.shape
    split = _split(batch) if split is None else split
    x_t = l if lq is None else lq  # what the gate reads for x[t]
    if not split:
        g = gate(buf, t, x_t, w_dil, cond, d, blocks=blocks)
        res_skip(g, w_rs, b_rs, l, skip, buf, t, d, residual, blocks=blocks, lq=lq)
        return
    assert (3 * c) % split == 0 and c % (3 * c // split) == 0, "layer: each split must lie in one tap"
    assert cond.stride(1) == 1 and l.is_contiguous(), "layer: strides"
    ks = 3 * c // split
    bm, bn, bk, warps, stages = _tiles(blocks or _blocks(batch, w_dil))
    z = torch.empty(split, batch, 2 * c, device=l.device, dtype=torch.float32)
    precision, widen = _precision(w_dil)
    _launch(_gate_split_kernel, (triton.cdiv(batch, bm), c // bn, split), buf, t, x_t, w_dil, z, batch, d,
            C=c, BM=bm, BN=bn, BK=min(bk, ks), KS=ks, PRECISION=precision, WIDEN=widen,
            num_warps=warps, num_stages=stages)
    res_skip(z, w_rs, b_rs, l, skip, buf, t, d, residual, blocks=blocks, cond=cond, lq=lq)


def start(taps: torch.Tensor, t: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
          ws: torch.Tensor, bs: torch.Tensor, lq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The start of a step: startconv over the scalar inputs x[t-2], x[t-1] (the two-slot ring
    ``taps`` [2, B]) and ``x`` [B], then skip_start; stores ``x`` in the ring. Returns the first
    layer input l [B, 512] and the skip sum [B, 256], float32; with ``lq`` [B, 512] (the staged
    input, in the layers' compute dtype), l is also stored there, converted."""
    batch = x.shape[0]
    c = w.shape[1]
    l = torch.empty(batch, c, device=x.device, dtype=torch.float32)
    x = x.contiguous()  # a column of the teacher-forced audio is strided
    bm = 16  # a [16, 512] tile a program: elementwise
    assert lq is None or (lq.shape == l.shape and lq.is_contiguous()), "start: the staged input"
    _launch(_start_kernel, (triton.cdiv(batch, bm),), taps, t, x, w, b, l, l if lq is None else lq, batch,
            C=c, BM=bm, STAGE=lq is not None, num_warps=4)
    return l, dense(l, ws, bs)


def dense(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, relu_in: bool = False,
          relu_out: bool = False) -> torch.Tensor:
    """relu?(relu?(x) @ w + bias) [B, N], float32, on the tensor cores (:func:`_fp32_precision`);
    ``bias`` is [N] or [B, N] with strided rows (the per-frame conditioning). Each program owns a
    [BM x BN] tile, so even batch 1 spreads over N / BN programs (one program for the whole
    product took 65 us of a 680 us step at batch 1 on an H100)."""
    batch, k = x.shape
    n = w.shape[1]
    assert x.is_contiguous() and w.shape[0] == k and bias.stride(-1) == 1, "dense: shapes"
    out = torch.empty(batch, n, device=x.device, dtype=torch.float32)
    if interpreting():  # few, large programs
        bm, bn, bk = max(16, min(64, triton.next_power_of_2(batch))), n, k
    else:  # BK 32 and 2 stages: float32 operand tiles well inside an SM's shared memory
        bm, bn, bk = (16, 16, 32) if batch <= 16 else (32, 32, 32) if batch <= 64 else (64, 32, 32)
    bias_stride = bias.stride(0) if bias.dim() == 2 else 0
    _launch(_dense_kernel, (triton.cdiv(batch, bm), n // bn), x, w, bias, out, batch, bias_stride,
            K=k, N=n, BM=bm, BN=bn, BK=bk, RELU_IN=relu_in, RELU_OUT=relu_out, PRECISION=_fp32_precision(),
            num_warps=4, num_stages=2)
    return out


def head(skip: torch.Tensor, w1: torch.Tensor, cond: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """logits [B, 256] = relu(relu(skip) @ w1 + cond) @ w2 + b2, float32 (``cond``: out1's
    conditioning with its bias folded in; rows may be strided): two :func:`dense` launches."""
    return dense(dense(skip, w1, cond, relu_in=True, relu_out=True), w2, b2)


def sample(logits: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, codes: torch.Tensor, prev: torch.Tensor) -> None:
    """In place: ``codes[:, t]`` <- the inverse-CDF class of softmax(``logits``) at the counter-based
    uniform U(key, t) (:mod:`onss_tui.model.rng`, recomputed in the kernel) and ``prev`` <- the
    next input, (class - 128) / 128."""
    batch, q = logits.shape
    assert codes.dtype == torch.uint8 and codes.is_contiguous() and prev.is_contiguous(), "sample: buffers"
    bm = max(16, min(32, triton.next_power_of_2(batch)))
    _launch(_sample_kernel, (triton.cdiv(batch, bm),), logits, keys, t, codes, prev, batch, codes.shape[1],
            Q=q, BM=bm, num_warps=4)
