"""Variants of the engine's gate kernel, for the tile sweeps (benchmarks/tune_tiles.py) only.

The engine's ``gate`` (onss_tui/engine/kernels.py) sums the three taps one after another, two dots
a K-slice, and adds the conditioning at the end. These are the other forms a GPU session times
against it, through the engine's own tiles, precisions and launcher:

    one_ring     both ring taps x[t-2d], x[t-d] in one K loop (one software pipeline, not two),
                 then x[t]: the same sums in the same order
    wide         one dot of twice the width over [sigmoid | tanh] weight columns into one
                 [BM, 2 BN] accumulator: the same sums
    cond_first   the sums start from the conditioning instead of adding it at the end: another
                 order (close, not bit-identical), but fewer registers live in the epilogue, which
                 lets 256 x 64 tiles compile without spills

With none of them set, :func:`gate` computes what the engine's gate does, bit for bit
(tests/test_tile_sweep.py).
"""

from __future__ import annotations

import torch

from onss_tui.engine.kernels import _blocks, _launch, _precision, _tiles, triton

__all__ = ["gate"]

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _gate_dots(x, w_ptr, wk, cols, acc_s, acc_t, acc, C: tl.constexpr, PRECISION: tl.constexpr,
                   WIDEN: tl.constexpr, WIDE: tl.constexpr):
        """acc_s += x @ W[wk, cols] and acc_t += x @ W[wk, C + cols] (W: [3C, 2C]; wk: the rows).
        WIDE: one dot of twice the width instead, into acc [BM, 2 BN] = [acc_s | acc_t] (the same
        sums). Returns the three accumulators."""
        w_rows = w_ptr + wk[:, None] * (2 * C)
        ws = tl.load(w_rows + cols[None, :])
        wt = tl.load(w_rows + C + cols[None, :])
        if WIDEN:
            x, ws, wt = x.to(tl.float32), ws.to(tl.float32), wt.to(tl.float32)
        if WIDE:
            both = tl.reshape(tl.permute(tl.join(ws, wt), (0, 2, 1)), (ws.shape[0], 2 * ws.shape[1]))
            return acc_s, acc_t, tl.dot(x, both, acc, input_precision=PRECISION)
        return tl.dot(x, ws, acc_s, input_precision=PRECISION), tl.dot(x, wt, acc_t, input_precision=PRECISION), acc

    @triton.jit
    def _sweep_gate_kernel(buf_ptr, t_ptr, l_ptr, w_ptr, cond_ptr, g_ptr,
                           B, d, cond_stride,
                           C: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                           PRECISION: tl.constexpr, WIDEN: tl.constexpr, ONE_RING: tl.constexpr,
                           WIDE: tl.constexpr, COND_FIRST: tl.constexpr):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)  # voices
        cols = tl.program_id(1) * BN + tl.arange(0, BN)  # gate channels in [0, C)
        live = rows[:, None] < B
        t = tl.load(t_ptr)  # int64 step counter, on the device
        cond = cond_ptr + rows[:, None] * cond_stride + cols[None, :]
        if COND_FIRST:  # the sums start from the conditioning: the epilogue holds nothing else
            acc_s = tl.load(cond, mask=live, other=0.0)  # z[:, cols]       -> sigmoid
            acc_t = tl.load(cond + C, mask=live, other=0.0)  # z[:, C + cols]   -> tanh
        else:
            acc_s = tl.zeros((BM, BN), dtype=tl.float32)
            acc_t = tl.zeros((BM, BN), dtype=tl.float32)
        acc = tl.zeros((BM, 2 * BN) if WIDE else (1, 1), dtype=tl.float32)  # WIDE: [acc_s | acc_t]
        if ONE_RING:  # both ring taps in one loop (one software pipeline, not two), then x[t]
            for k in range(0, 2 * C, BK):  # the same sums in the same order as below
                slot = (t + (k // C) * d) % (2 * d)
                ks = k % C + tl.arange(0, BK)
                x = tl.load(buf_ptr + slot * B * C + rows[:, None] * C + ks[None, :], mask=live, other=0.0)
                acc_s, acc_t, acc = _gate_dots(x, w_ptr, k + tl.arange(0, BK), cols, acc_s, acc_t, acc, C, PRECISION,
                                               WIDEN, WIDE)
        for tap in tl.static_range(2 if ONE_RING else 0, 3):  # x[t-2d], x[t-d], x[t]
            for k0 in range(0, C, BK):
                ks = k0 + tl.arange(0, BK)
                if tap < 2:  # x[t - (2 - tap) d] sits in slot (t + tap d) mod 2d
                    x = tl.load(buf_ptr + ((t + tap * d) % (2 * d)) * B * C + rows[:, None] * C + ks[None, :],
                                mask=live, other=0.0)
                else:
                    x = tl.load(l_ptr + rows[:, None] * C + ks[None, :], mask=live, other=0.0)
                    x = x.to(w_ptr.dtype.element_ty)  # the layer input, in the compute dtype
                acc_s, acc_t, acc = _gate_dots(x, w_ptr, tap * C + ks, cols, acc_s, acc_t, acc, C, PRECISION,
                                               WIDEN, WIDE)
        if WIDE:
            acc_s, acc_t = tl.split(tl.permute(tl.reshape(acc, (BM, 2, BN)), (0, 2, 1)))
        if COND_FIRST:
            zs, zt = acc_s, acc_t
        else:
            zs = acc_s + tl.load(cond, mask=live, other=0.0)
            zt = acc_t + tl.load(cond + C, mask=live, other=0.0)
        g = tl.sigmoid(zs) * (2.0 * tl.sigmoid(2.0 * zt) - 1.0)  # tanh(z) = 2 sigmoid(2z) - 1
        tl.store(g_ptr + rows[:, None] * C + cols[None, :], g.to(g_ptr.dtype.element_ty), mask=live)


def gate(buf: torch.Tensor, t: torch.Tensor, l: torch.Tensor, w: torch.Tensor, cond: torch.Tensor,
         d: int, out: torch.Tensor | None = None, blocks: tuple[int, ...] | None = None,
         one_ring: bool = False, wide: bool = False, cond_first: bool = False) -> torch.Tensor:
    """The engine's :func:`~onss_tui.engine.kernels.gate` (same arguments, tiles and result) in
    the variant the flags pick (see the module docstring)."""
    two_d, batch, c = buf.shape
    assert two_d == 2 * d and w.shape == (3 * c, 2 * c) and cond.stride(1) == 1, "gate: shapes"
    assert not (wide and cond_first), "gate: the wide variant adds the conditioning at the end"
    if out is None:
        out = torch.empty(batch, c, device=l.device, dtype=w.dtype)
    bm, bn, bk, warps, stages = _tiles(blocks or _blocks(batch, w))
    precision, widen = _precision(w)
    grid = (triton.cdiv(batch, bm), c // bn)
    _launch(_sweep_gate_kernel, grid, buf, t, l, w, cond, out, batch, d, cond.stride(0),
            C=c, BM=bm, BN=bn, BK=bk, PRECISION=precision, WIDEN=widen, ONE_RING=one_ring, WIDE=wide,
            COND_FIRST=cond_first, num_warps=warps, num_stages=stages)
    return out
