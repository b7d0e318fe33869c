"""Many generation steps in one kernel launch, for small batches (``kernels: persistent``).

At a small batch a step is latency, not arithmetic: the fused kernels (:mod:`onss_tui.engine.kernels`)
take 66 launches a step, each too short to reach full speed before the next must wait for it
(1,476 samples/s at batch 1 on an H100, 677 us a step, against ~35 us to read the 118 MB of bf16
weights once). Here one launch runs ``n`` whole steps. Its programs stay resident (one per SM at
most; a cooperative launch on a GPU guarantees they all run at once) and walk through the step's
phases together, each phase's tiles dealt round-robin to the programs, with a grid-wide barrier
between phases (an atomic counter every program increments, then waits on):

    start     l = startconv(x[t-2], x[t-1], x[t]); skip = l @ W_ss + b_ss        tiles (rows, skip cols)
    for each of the 30 layers:
      gate    z_p = tap_p @ W_dil[p]  for the taps p = x[t-2d], x[t-d], x[t]      tiles (rows, cols, tap)
      res     g = gate(z_0 + z_1 + z_2 + cond);  rs = g @ W_rs + b_rs              tiles (rows, out cols)
              buf[t mod 2d] <- l ;  l += rs[:, :512] ;  skip += rs[:, 512:]
    out1      s = relu(relu(skip) @ W_1 + cond_out)                               tiles (rows, cols)
    logits    s @ W_2 + b_2                                                       tiles (rows, cols)
    sample    the class at U(key, t) (as kernels.sample); codes[:, t], x[t+1]     one program a row block

64 barriers a step instead of 66 launches; the gate's three taps are separate tiles (split-K, as
the fused path's small batches), so 96 programs share each layer's weights at batch 1.

The arithmetic is its own (its own tiles and orders of summation, fixed for a given batch), so a
generation keeps to it throughout: sampling, teacher-forced scoring (``FORCED``, ``HEAD``) and
the replay that rebuilds a compact state (``FORCED`` without the head) all run this kernel, and a
resume is bit-exact.

Data written by one program and read by another in a later phase is loaded with ``.cg`` (from
L2, never a stale L1 line). The layer ring buffers are separate tensors; the kernel addresses
them from the first one's pointer plus each layer's element offset, computed on the host from
their addresses (fixed for a generation: states are loaded by copying into them).

A barrier that a program never reaches would spin forever (a fault of the kernel or of the
launch); instead a program gives up after ``SPIN_LIMIT`` polls and marks the barrier word
stalled, which opens every barrier from then on, and the generation refuses the samples before
they are saved or returned (:class:`BarrierStall`, from :meth:`Persistent.check`; a run fails
with the fix named, keeping its last sound save).

Triton's CPU interpreter runs a launch's programs one after another, so there the grid is one
program, which deals every tile to itself and passes every barrier at once; a grid of two there
is a grid one of whose programs is not running, which the tests use to stall it; and the tests
also run the interpreter's programs at once, in threads, to check the barriers and the dealing.
"""

from __future__ import annotations

import torch

from onss_tui.engine import kernels as fused
from onss_tui.engine.kernels import interpreting, triton

__all__ = ["Persistent", "BarrierStall", "stalled", "MAX_BATCH", "SPIN_LIMIT", "STALLED"]

MAX_BATCH = 64  # beyond this the fused kernels' big tiles are faster (and the grid is full anyway)
SPIN_LIMIT = 1 << 22  # polls of a barrier before a program gives up: seconds on a GPU (a phase: microseconds)
STALLED = 1 << 30  # the barrier word's bit a program that gave up sets (see _grid_sync)


class BarrierStall(RuntimeError):
    """A persistent launch stalled at a grid barrier: its samples are wrong and must not be kept."""


def stalled(word: int, spins: int = SPIN_LIMIT) -> None:
    """Raise :class:`BarrierStall` if ``word`` (a runner's barrier word, read back) says a launch stalled."""
    if word & STALLED:
        raise BarrierStall(
            f"the persistent kernel stalled: a program waited {spins:,} polls at a grid barrier for programs that "
            "were not running, so its samples since the last save are wrong and were not kept. Use the fused "
            "kernels instead (kernels: triton; onss bench --kernels triton), and please report the GPU, driver "
            "and Triton version.")


if triton is not None:
    import triton.language as tl

    from onss_tui.engine.kernels import _draw, _gate_dots, _rows_times

    @triton.jit
    def _grid_sync(bar_ptr, epoch, SPINS: tl.constexpr):
        """Barrier number ``epoch`` (1, 2, ...) of a launch: returns once every program has
        arrived. ``bar_ptr``: an int32, the arrivals; it only grows during a launch, and each
        launch starts from it masked to its bit 30 (:meth:`Persistent.run`).

        A program that polls ``SPINS`` times in vain (seconds on a GPU, where a phase takes
        microseconds: a program of the grid is not running) sets bit 30, which counts as every
        arrival of any barrier, so the launch, and every later one, runs through without waiting,
        with wrong numbers, instead of hanging the GPU; the host sees the bit and refuses the
        samples (:meth:`Persistent.check`). The last poll allowed may be the one that succeeds:
        a wait that long is a fault anyway. (One atomic and this loop: other forms made ptxas
        spill.)"""
        tl.debug_barrier()  # every thread of this program has issued its writes
        tl.atomic_add(bar_ptr, 1, sem="release", scope="gpu")
        want = epoch * tl.num_programs(0)
        polls = 0
        while (tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu") < want) & (polls < SPINS):
            polls += 1
        tl.atomic_max(bar_ptr, (polls >= SPINS).to(tl.int32) << 30, sem="relaxed", scope="gpu")
        tl.debug_barrier()

    @triton.jit
    def _steps_kernel(t_ptr, bar_ptr, forced_ptr, taps_ptr, prev_ptr, keys_ptr, codes_ptr, total,
                      start_w, start_b, ss_w, ss_b,
                      dil_w, cond_ptr, cond_stride, z_ptr, rs_w, rs_b, l_ptr, skip_ptr,
                      buf_ptr, buf_off_ptr, dil_ptr,
                      out1_w, cond_out_ptr, cond_out_stride, s_ptr, logits_w, logits_b, logits_ptr,
                      B, L, n_steps,
                      C: tl.constexpr, S: tl.constexpr, Q: tl.constexpr,
                      BM: tl.constexpr, BNG: tl.constexpr, BNR: tl.constexpr, BNH: tl.constexpr,
                      BK: tl.constexpr, BKH: tl.constexpr, GATE_STAGES: tl.constexpr, RES_STAGES: tl.constexpr,
                      PRECISION: tl.constexpr, PRECISION_F32: tl.constexpr, WIDEN: tl.constexpr,
                      FORCED: tl.constexpr, HEAD: tl.constexpr, SAMPLE: tl.constexpr,
                      SPINS: tl.constexpr):
        pid = tl.program_id(0)
        nprog = tl.num_programs(0)
        n_rb = tl.cdiv(B, BM)  # row blocks of BM voices
        t0 = tl.load(t_ptr)
        cdt = dil_w.dtype.element_ty  # the layers' compute dtype
        epoch = 0
        for step in range(n_steps):
            t = t0 + step
            x_in = forced_ptr + step * B if FORCED else prev_ptr  # x[t], one per voice
            # -- start: l [B, C] and the skip sum's first term [B, S] ------------------------------
            for tile in range(pid, n_rb * (S // BNH), nprog):
                rows = (tile // (S // BNH)) * BM + tl.arange(0, BM)
                cols = (tile % (S // BNH)) * BNH + tl.arange(0, BNH)
                live1 = rows < B
                x2 = tl.load(taps_ptr + (t % 2) * B + rows, mask=live1, other=0.0, cache_modifier=".cg")[:, None]
                x1 = tl.load(taps_ptr + ((t + 1) % 2) * B + rows, mask=live1, other=0.0,
                             cache_modifier=".cg")[:, None]
                x0 = tl.load(x_in + rows, mask=live1, other=0.0, cache_modifier=".cg")[:, None]
                acc = tl.zeros((BM, BNH), dtype=tl.float32)
                for k0 in range(0, C, BKH):
                    ks = k0 + tl.arange(0, BKH)
                    l = x2 * tl.load(start_w + ks)[None, :] + x1 * tl.load(start_w + C + ks)[None, :]
                    l = l + x0 * tl.load(start_w + 2 * C + ks)[None, :]
                    l = l + tl.load(start_b + ks)[None, :]
                    if tile % (S // BNH) == 0:  # the first tile of each row block stores l
                        tl.store(l_ptr + rows[:, None] * C + ks[None, :], l, mask=live1[:, None])
                    acc = tl.dot(l, tl.load(ss_w + ks[:, None] * S + cols[None, :]), acc,
                                 input_precision=PRECISION_F32)
                acc += tl.load(ss_b + cols)[None, :]
                tl.store(skip_ptr + rows[:, None] * S + cols[None, :], acc, mask=live1[:, None])
            epoch += 1
            _grid_sync(bar_ptr, epoch, SPINS)
            for i in range(L):
                d = tl.load(dil_ptr + i)
                ring = buf_ptr + tl.load(buf_off_ptr + i)  # this layer's ring buffer [2d, B, C]
                w_i = dil_w + i * (3 * C * 2 * C)
                # -- gate: partial sums of z over one tap a tile ----------------------------------
                for tile in range(pid, n_rb * (C // BNG) * 3, nprog):
                    tap = tile % 3
                    rows = (tile // (3 * (C // BNG))) * BM + tl.arange(0, BM)
                    cols = ((tile // 3) % (C // BNG)) * BNG + tl.arange(0, BNG)
                    live = rows[:, None] < B
                    acc_s = tl.zeros((BM, BNG), dtype=tl.float32)
                    acc_t = tl.zeros((BM, BNG), dtype=tl.float32)
                    if tap < 2:  # x[t - (2 - tap) d] sits in slot (t + tap d) mod 2d
                        here = ring + ((t + tap * d) % (2 * d)) * B * C + rows[:, None] * C
                        for k0 in tl.range(0, C, BK, num_stages=GATE_STAGES):
                            ks = k0 + tl.arange(0, BK)
                            x = tl.load(here + ks[None, :], mask=live, other=0.0, cache_modifier=".cg")
                            acc_s, acc_t = _gate_dots(x, w_i, tap * C + ks, cols, acc_s, acc_t, C, PRECISION, WIDEN)
                    else:  # x[t]: the layer input
                        for k0 in tl.range(0, C, BK, num_stages=GATE_STAGES):
                            ks = k0 + tl.arange(0, BK)
                            x = tl.load(l_ptr + rows[:, None] * C + ks[None, :], mask=live, other=0.0,
                                        cache_modifier=".cg").to(cdt)
                            acc_s, acc_t = _gate_dots(x, w_i, 2 * C + ks, cols, acc_s, acc_t, C, PRECISION, WIDEN)
                    out = z_ptr + tap * B * 2 * C + rows[:, None] * (2 * C) + cols[None, :]
                    tl.store(out, acc_s, mask=live)
                    tl.store(out + C, acc_t, mask=live)
                epoch += 1
                _grid_sync(bar_ptr, epoch, SPINS)
                # -- the gate, then residual and skip ---------------------------------------------
                for tile in range(pid, n_rb * ((C + S) // BNR), nprog):
                    rows = (tile // ((C + S) // BNR)) * BM + tl.arange(0, BM)
                    cols = (tile % ((C + S) // BNR)) * BNR + tl.arange(0, BNR)
                    live = rows[:, None] < B
                    acc = tl.zeros((BM, BNR), dtype=tl.float32)
                    for k0 in tl.range(0, C, BK, num_stages=RES_STAGES):
                        ks = k0 + tl.arange(0, BK)
                        zh = z_ptr + rows[:, None] * (2 * C) + ks[None, :]
                        zs = tl.load(zh, mask=live, other=0.0, cache_modifier=".cg")
                        zt = tl.load(zh + C, mask=live, other=0.0, cache_modifier=".cg")
                        for p in tl.static_range(1, 3):
                            zs += tl.load(zh + p * B * 2 * C, mask=live, other=0.0, cache_modifier=".cg")
                            zt += tl.load(zh + p * B * 2 * C + C, mask=live, other=0.0, cache_modifier=".cg")
                        cz = cond_ptr + rows[:, None] * cond_stride + i * 2 * C + ks[None, :]
                        zs += tl.load(cz, mask=live, other=0.0)
                        zt += tl.load(cz + C, mask=live, other=0.0)
                        g = (tl.sigmoid(zs) * (2.0 * tl.sigmoid(2.0 * zt) - 1.0)).to(cdt)
                        w = tl.load(rs_w + i * C * (C + S) + ks[:, None] * (C + S) + cols[None, :])
                        if WIDEN:
                            g, w = g.to(tl.float32), w.to(tl.float32)
                        acc = tl.dot(g, w, acc, input_precision=PRECISION)
                    acc += tl.load(rs_b + i * (C + S) + cols)[None, :]
                    if tile % ((C + S) // BNR) * BNR < C:  # residual columns (BNR divides C)
                        here = rows[:, None] * C + cols[None, :]
                        old = tl.load(l_ptr + here, mask=live, other=0.0, cache_modifier=".cg")  # x[t]
                        tl.store(ring + (t % (2 * d)) * B * C + here, old.to(cdt), mask=live)
                        tl.store(l_ptr + here, old + acc, mask=live)  # the next layer's input
                    else:
                        sk = skip_ptr + rows[:, None] * S + (cols[None, :] - C)
                        tl.store(sk, tl.load(sk, mask=live, other=0.0, cache_modifier=".cg") + acc, mask=live)
                epoch += 1
                _grid_sync(bar_ptr, epoch, SPINS)
            if HEAD:  # -- out1, then the logits ---------------------------------------------------
                for tile in range(pid, n_rb * (S // BNH), nprog):
                    rows = (tile // (S // BNH)) * BM + tl.arange(0, BM)
                    cols = (tile % (S // BNH)) * BNH + tl.arange(0, BNH)
                    live = rows[:, None] < B
                    acc = _rows_times(skip_ptr, rows, live, out1_w, cols, S, S, BKH, True, PRECISION_F32, True)
                    acc += tl.load(cond_out_ptr + rows[:, None] * cond_out_stride + cols[None, :], mask=live,
                                   other=0.0)
                    tl.store(s_ptr + rows[:, None] * S + cols[None, :], tl.maximum(acc, 0.0), mask=live)
                epoch += 1
                _grid_sync(bar_ptr, epoch, SPINS)
                for tile in range(pid, n_rb * (Q // BNH), nprog):
                    rows = (tile // (Q // BNH)) * BM + tl.arange(0, BM)
                    cols = (tile % (Q // BNH)) * BNH + tl.arange(0, BNH)
                    live = rows[:, None] < B
                    acc = _rows_times(s_ptr, rows, live, logits_w, cols, S, Q, BKH, False, PRECISION_F32, True)
                    acc += tl.load(logits_b + cols)[None, :]
                    tl.store(logits_ptr + rows[:, None] * Q + cols[None, :], acc, mask=live)
                epoch += 1
                _grid_sync(bar_ptr, epoch, SPINS)
            # -- x[t] into the startconv ring; with SAMPLE, draw x[t + 1] ------------------------
            for rb in range(pid, n_rb, nprog):
                rows = rb * BM + tl.arange(0, BM)
                live1 = rows < B
                now = tl.load(x_in + rows, mask=live1, other=0.0, cache_modifier=".cg")
                tl.store(taps_ptr + (t % 2) * B + rows, now, mask=live1)  # read by every start above
                if SAMPLE:
                    tl.debug_barrier()  # every thread has read x[t] (prev) before prev is overwritten
                    logits = tl.load(logits_ptr + rows[:, None] * Q + tl.arange(0, Q)[None, :],
                                     mask=live1[:, None], other=0.0, cache_modifier=".cg")
                    k = _draw(logits, keys_ptr, rows, live1, t, Q)  # as kernels.sample draws
                    tl.store(codes_ptr + rows.to(tl.int64) * total + t, k.to(tl.uint8), mask=live1)
                    tl.store(prev_ptr + rows, (k.to(tl.float32) - 128.0) / 128.0, mask=live1)
            if step + 1 < n_steps:
                epoch += 1
                _grid_sync(bar_ptr, epoch, SPINS)


def _tiles(batch: int, dtype: torch.dtype) -> dict:
    """Tile sizes, from the batch alone (they set the summation order), and pipeline depths.

    A phase's tile walks its K-slices (BK = 64) one after another, so without pipelining each
    slice waits a whole memory latency for its operands (sm_90 code: load, store to shared
    memory, sync, mma; 8 slices a gate tile). With 16-bit weights the gate's and res_skip's K
    loops are pipelined 3 deep on their own (cp.async, L1 bypassed as the .cg loads are);
    pipelining the whole kernel (``num_stages`` 2 or 3) ran out of sm_90's 255 registers and
    spilled, as did a BK of 128 or more even unpipelined, and float32 weights (fp32, tf32) spill
    with any pipelined loop (a test compiles them). Unmeasured on a GPU so far."""
    if interpreting():  # numpy per program: few, large tiles
        bm = max(16, min(64, triton.next_power_of_2(batch)))
        return dict(BM=bm, BNG=256, BNR=256, BNH=256, BK=512, BKH=256, GATE_STAGES=1, RES_STAGES=1,
                    num_warps=1, num_stages=1)
    deep = 3 if dtype.itemsize == 2 else 1
    return dict(BM=16, BNG=16, BNR=64, BNH=16, BK=64, BKH=64, GATE_STAGES=deep, RES_STAGES=deep, num_warps=4,
                num_stages=1)


class Persistent:
    """The scratch a generation's persistent launches share (fixed addresses: capturable in a CUDA
    graph), for one :class:`~onss_tui.engine.fastgen.PackedDecoder` and batch."""

    def __init__(self, packed, batch: int):
        why = fused.why_unavailable(packed.device)
        if why:
            raise RuntimeError(f"kernels 'persistent' asked for, but {why}")
        if batch > MAX_BATCH:
            raise ValueError(f"kernels 'persistent' runs batches of up to {MAX_BATCH} voices, not {batch}")
        dev, c = packed.device, packed.start_w.shape[1]
        s = packed.skip_start_w.shape[1]
        self.packed, self.batch = packed, batch
        self.dil_w, self.rs_w, self.rs_b = packed.stacked()
        f32 = dict(device=dev, dtype=torch.float32)
        self.l = torch.zeros(batch, c, **f32)
        self.z = torch.zeros(3, batch, 2 * c, **f32)
        self.skip = torch.zeros(batch, s, **f32)
        self.s = torch.zeros(batch, s, **f32)
        self.logits = torch.zeros(batch, packed.logits_w.shape[1], **f32)
        self.bar = torch.zeros(1, dtype=torch.int32, device=dev)  # the barriers' arrivals, and STALLED
        self.spin_limit = SPIN_LIMIT
        self.dil = torch.tensor(packed.dilations, dtype=torch.int32, device=dev)
        self._offsets: dict[tuple[int, ...], torch.Tensor] = {}
        if interpreting():
            self.programs = 1  # the interpreter runs programs in turn: a barrier needs them all at once
        else:
            self.programs = torch.cuda.get_device_properties(dev).multi_processor_count
        tiles = _tiles(batch, self.dil_w.dtype)  # programs: at most the gate phase's tiles
        self.programs = min(self.programs, triton.cdiv(batch, tiles["BM"]) * 3 * (c // tiles["BNG"]))

    def check(self) -> None:
        """Raise :class:`BarrierStall` if a launch so far stalled (waits for the queued launches)."""
        stalled(int(self.bar.item()), self.spin_limit)

    def _ring_offsets(self, buffers: list[torch.Tensor]) -> torch.Tensor:
        """Each layer's ring buffer as an element offset from the first one's (made once per set
        of buffers; a generation keeps its buffers)."""
        ptrs = tuple(b.data_ptr() for b in buffers)
        if ptrs not in self._offsets:
            size = buffers[0].element_size()
            assert all((p - ptrs[0]) % size == 0 for p in ptrs) and all(b.is_contiguous() for b in buffers)
            self._offsets[ptrs] = torch.tensor([(p - ptrs[0]) // size for p in ptrs], dtype=torch.int64,
                                               device=buffers[0].device)
        return self._offsets[ptrs]

    def run(self, state, t: torch.Tensor, n: int, cond: tuple[torch.Tensor, torch.Tensor], *,
            prev: torch.Tensor | None = None, keys: torch.Tensor | None = None, codes: torch.Tensor | None = None,
            forced: torch.Tensor | None = None, head: bool = True) -> torch.Tensor:
        """``n`` steps from the device step ``t`` (int64 scalar, left as it is) within one frame
        (``cond``: its per-layer and out1 conditioning), in place on ``state`` (ring buffers, the
        startconv ring). Sampling (``prev``, ``keys``, ``codes``): x[t] from ``prev``, each class
        drawn into ``codes[:, t]`` and ``prev``. Teacher-forced (``forced`` [n, B]): the given
        inputs; ``head`` computes the logits (returned: the last step's, [B, 256])."""
        packed = self.packed
        cond_layers, cond_out = cond
        sample = forced is None
        assert n >= 1 and state.buffers[0].shape[1] == self.batch, "persistent: steps or batch"
        c = self.l.shape[1]
        assert cond_layers.stride()[1:] == (2 * c, 1) and cond_out.stride(1) == 1, "persistent: the conditioning"
        if sample:
            assert prev is not None and keys is not None and codes is not None and codes.dtype == torch.uint8
        else:
            assert forced is not None, "persistent: teacher forcing needs the forced inputs"
            forced = forced.to(torch.float32).contiguous()
            assert forced.shape == (n, self.batch), "persistent: forced inputs [n, B]"
        tiles = _tiles(self.batch, self.dil_w.dtype)
        warps, stages = tiles.pop("num_warps"), tiles.pop("num_stages")
        precision, widen = fused._precision(self.dil_w)
        self.bar.bitwise_and_(STALLED)  # arrivals from 0; a stall stays (every later launch runs through)
        meta = dict(launch_cooperative_grid=True) if not interpreting() else {}
        fused._launch(_steps_kernel, (self.programs,), t, self.bar, forced if forced is not None else self.l,
                      state.start_taps, prev if sample else self.l, keys if sample else self.dil,
                      codes if sample else self.bar, codes.shape[1] if codes is not None and sample else 0,
                      packed.start_w, packed.start_b, packed.skip_start_w, packed.skip_start_b,
                      self.dil_w, cond_layers, cond_layers.stride(0), self.z, self.rs_w, self.rs_b, self.l,
                      self.skip, state.buffers[0], self._ring_offsets(state.buffers), self.dil,
                      packed.out1_w, cond_out, cond_out.stride(0), self.s, packed.logits_w, packed.logits_b,
                      self.logits, self.batch, len(packed.dilations), n,
                      C=self.l.shape[1], S=self.skip.shape[1], Q=self.logits.shape[1], **tiles,
                      PRECISION=precision, PRECISION_F32=fused._fp32_precision(), WIDEN=widen,
                      FORCED=not sample, HEAD=head or sample, SAMPLE=sample, SPINS=self.spin_limit,
                      num_warps=warps, num_stages=stages, **meta)
        return self.logits
