"""Incremental ("fast") generation: the decoder run one sample at a time with per-layer state.

Every causal K=3 layer with dilation d needs its input at t-2d, t-d and t. Each layer keeps a
ring buffer of its last 2d inputs, zero-initialised (which is exactly the zero padding of the
teacher-forced form, spec §4.1):

    slot(t) = t mod 2d            buf[slot] holds x[t-2d]; buf[(t+d) mod 2d] holds x[t-d]
    y[t]    = [x[t-2d] | x[t-d] | x[t]] @ W_taps + b          W_taps = [W0; W1; W2]  [3C, Cout]
    then buf[slot] <- x[t]

The conditioning of every layer (cond_map_i(enc) + dilatedconv_i bias, and cond_map_out1(enc) +
out1 bias) changes once per 512-sample frame, so it is one small matmul per frame, not per step.

Sampling draws u = U(seed, sound id, t) from :mod:`onss_tui.model.rng` and takes the inverse-CDF
class k = #{cdf < u} (numpy's searchsorted, as Magenta's ``sample_categorical``), clamped to 255.
The fed-back input is (k - 128) / 128, which equals mu-law(inv_mu_law(k)) / 128 exactly.

Precision: ``fp32``/``tf32`` keep everything in float32 (tf32 lets CUDA matmuls use TF32 cores);
``bf16`` stores weights and layer states in bfloat16 and multiplies in bfloat16 with float32
accumulation, while the residual and skip sums, the gates, the conditioning and the softmax stay
in float32. On a CPU the PyTorch layer step takes the bfloat16 products in float32 instead, on
the exact float32 widening of the bfloat16 operands (:mod:`onss_tui.engine.bf16cpu`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from onss_tui.engine.bf16cpu import matmul_dtype, widen
from onss_tui.model.decoder import RESIDUAL, SKIP, Decoder
from onss_tui.model.encoder import HOP
from onss_tui.model.rng import uniform
from onss_tui.vocab import KERNELS

__all__ = ["PackedDecoder", "DecoderState", "Generation", "check_kernels", "sample", "voice_bytes", "auto_batch"]


def check_kernels(kernels: str) -> str:
    """``kernels`` if it names a layer step; ValueError otherwise."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
    return kernels


def voice_bytes(dilations: list[int], dtype: torch.dtype, length: int = 64000) -> int:
    """GPU memory one voice needs while generating: its ring buffers (2d x 512 per layer), its
    codes, and about 64 KB of per-step activations (the [B, 1536] taps, [B, 1024] gates ...)."""
    element = torch.empty((), dtype=dtype).element_size()
    return sum(2 * d for d in dilations) * RESIDUAL * element + length + 64 * 1024


def auto_batch(free_bytes: int, per_voice: int, reserve: int = 2 << 30, cap: int = 8192) -> int:
    """The largest power of two of voices that fits in ``free_bytes`` after ``reserve`` (weights,
    the CUDA context, a graph's pool), at most ``cap``; at least 1. Out-of-memory still halves."""
    fits = max(1, (free_bytes - reserve) // per_voice)
    batch = 1
    while batch * 2 <= min(fits, cap):
        batch *= 2
    return batch


def sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Magenta's inverse-CDF rule: logits [B, 256], uniforms [B] -> classes [B, 1] (int64), the
    count of CDF entries below u, clamped to 255 (float rounding can leave the CDF under 1)."""
    cdf = torch.cumsum(torch.softmax(logits, -1), -1)  # [B, 256]
    return torch.searchsorted(cdf, u[:, None]).clamp_(max=255)


def _snapshot(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy that later steps cannot change (``.cpu()`` of a CPU tensor is the tensor itself)."""
    return t.to("cpu", copy=True)


def _taps(conv: torch.nn.Conv1d) -> torch.Tensor:
    """torch conv weight [Cout, Cin, K] -> tap-stacked matrix [K * Cin, Cout] (earliest tap first)."""
    w = conv.weight.detach()
    return w.permute(2, 1, 0).reshape(-1, w.shape[0])


def _matrix(conv: torch.nn.Conv1d) -> torch.Tensor:
    """1x1 conv weight [Cout, Cin, 1] -> [Cin, Cout]."""
    return conv.weight.detach()[:, :, 0].T


@dataclass
class DecoderState:
    """Everything the decoder remembers between steps, for a batch of B voices."""

    t: int  # the next step to compute
    start_taps: torch.Tensor  # [2, B] float32: startconv inputs at t-2 and t-1
    buffers: list[torch.Tensor] = field(default_factory=list)  # per layer [2d, B, 512], compute dtype

    def to_dict(self) -> dict:
        return {"t": self.t, "start_taps": _snapshot(self.start_taps), "buffers": [_snapshot(b) for b in self.buffers]}

    @classmethod
    def from_dict(cls, d: dict, device: torch.device) -> DecoderState:
        return cls(int(d["t"]), d["start_taps"].to(device), [b.to(device) for b in d["buffers"]])


class PackedDecoder:
    """The decoder's weights rearranged for one-sample steps, on one device, in one precision."""

    def __init__(self, decoder: Decoder, device: torch.device | str = "cpu", compute_dtype: torch.dtype = torch.float32,
                 kernels: str = "torch"):
        dev = torch.device(device)
        cdt = compute_dtype
        if check_kernels(kernels) != "torch":
            from onss_tui.engine.kernels import why_unavailable

            why = why_unavailable(dev)
            if why:
                raise RuntimeError(f"kernels {kernels!r} asked for, but {why}")
        self.device, self.compute_dtype, self.kernels = dev, cdt, kernels
        self.dilations = [conv.dilation[0] for conv in decoder.dilated]
        n = len(self.dilations)

        def f32(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dev, torch.float32).contiguous()

        def low(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dev, cdt).contiguous()

        # startconv: 1 input channel, so its taps are three row vectors [3, 512]
        self.start_w = f32(decoder.startconv.weight[:, 0, :].T)  # [3, 512]
        self.start_b = f32(decoder.startconv.bias)  # [512]
        self.skip_start_w = f32(_matrix(decoder.skip_start))  # [512, 256]
        self.skip_start_b = f32(decoder.skip_start.bias)
        self.dil_all = low(torch.stack([_taps(c) for c in decoder.dilated]))  # [n, 1536, 1024]
        self.dil_w = list(self.dil_all.unbind(0))  # n x [1536, 1024], views
        # res_i and skip_i read the same gate output: one [512, 768] matrix (skip only for the last layer)
        self.rs_w, self.rs_b = [], []
        for i in range(n):
            if i < n - 1:
                self.rs_w.append(low(torch.cat([_matrix(decoder.res[i]), _matrix(decoder.skip[i])], 1)))
                self.rs_b.append(f32(torch.cat([decoder.res[i].bias, decoder.skip[i].bias])))
            else:
                self.rs_w.append(low(_matrix(decoder.skip[i])))
                self.rs_b.append(f32(decoder.skip[i].bias))
        # all conditioning in one matmul per frame: [16, n*1024 + 256], biases folded in
        self.cond_w = f32(
            torch.cat([_matrix(c) for c in decoder.cond_map] + [_matrix(decoder.cond_map_out1)], 1)
        )
        self.cond_b = f32(
            torch.cat(
                [c.bias + d.bias for c, d in zip(decoder.cond_map, decoder.dilated)]
                + [decoder.cond_map_out1.bias + decoder.out1.bias]
            )
        )
        self.out1_w = f32(_matrix(decoder.out1))  # [256, 256]
        self.logits_w = f32(_matrix(decoder.logits))  # [256, 256]
        self.logits_b = f32(decoder.logits.bias)
        self.gate_width = decoder.dilated[0].out_channels
        # what the PyTorch layer step multiplies by: the weights themselves, or on a CPU below
        # float32 their exact float32 widening (engine.bf16cpu)
        self.mm_dtype = matmul_dtype(dev, cdt) if kernels == "torch" else cdt
        self.dil_mm, self.rs_mm = widen(self.dil_w, self.mm_dtype), widen(self.rs_w, self.mm_dtype)
        self._rs_all: tuple[torch.Tensor, torch.Tensor] | None = None
        self._persistent: dict = {}  # batch -> engine.persistent.Persistent (its scratch)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All layers' weights as single tensors, for the persistent kernel: W_dil [n, 1536, 1024]
        (what ``dil_w`` are views of), W_rs [n, 512, 768] and b_rs [n, 768], the last layer's
        skip-only matrix in the skip columns with zeros for its (unused) residual."""
        if self._rs_all is None:
            n, (c, width) = len(self.rs_w), self.rs_w[0].shape
            w = torch.zeros(n, c, width, device=self.device, dtype=self.compute_dtype)
            b = torch.zeros(n, width, device=self.device)
            for i, (wi, bi) in enumerate(zip(self.rs_w, self.rs_b)):
                w[i, :, width - wi.shape[1]:] = wi
                b[i, width - bi.shape[0]:] = bi
            self._rs_all = w, b
        return (self.dil_all, *self._rs_all)

    def persistent(self, batch: int):
        """The persistent kernel's runner for ``batch`` voices (made once per batch)."""
        if batch not in self._persistent:
            from onss_tui.engine.persistent import Persistent

            self._persistent[batch] = Persistent(self, batch)
        return self._persistent[batch]

    def persistent_runners(self) -> list:
        """The persistent kernel's runners made so far (one per batch size)."""
        return list(self._persistent.values())

    def check(self) -> None:
        """Raise :class:`~onss_tui.engine.persistent.BarrierStall` if a persistent launch of this
        decoder stalled (a no-op for the other layer steps; waits for the queued launches)."""
        for runner in self.persistent_runners():
            runner.check()

    @property
    def receptive_field(self) -> int:
        """How many past inputs the state at step t depends on: 2 (startconv) + sum of 2d. Replaying
        that many steps from a zero state rebuilds every ring buffer exactly (1 + 6,140 for NSynth)."""
        return 2 + sum(2 * d for d in self.dilations)

    # -- state ---------------------------------------------------------------------------------
    def fresh_state(self, batch: int) -> DecoderState:
        bufs = [torch.zeros(2 * d, batch, RESIDUAL, device=self.device, dtype=self.compute_dtype)
                for d in self.dilations]
        return DecoderState(0, torch.zeros(2, batch, device=self.device), bufs)

    def condition(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoding frame [B, 16] -> (per-layer gate bias [B, n, 1024], out1 bias [B, 256])."""
        c = frame.to(self.device, torch.float32) @ self.cond_w + self.cond_b  # [B, n*1024 + 256]
        layers = c[:, : -SKIP].unflatten(1, (len(self.dilations), self.gate_width))
        return layers, c[:, -SKIP:]

    # -- one step ------------------------------------------------------------------------------
    def step(self, state: DecoderState, x_in: torch.Tensor, cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Feed x_in [B] (the previous sample as q / 128) at step state.t; return logits [B, 256] fp32.

        The ring-buffer slots come from the host's step counter (plain indexing)."""
        t = state.t

        def start_taps() -> tuple[torch.Tensor, torch.Tensor]:
            x2, x1 = state.start_taps[t % 2].clone(), state.start_taps[(t + 1) % 2]
            state.start_taps[t % 2] = x_in  # (after the copy: x2 was that row)
            return x2, x1

        def taps(i: int, now: torch.Tensor) -> torch.Tensor:
            buf, d = state.buffers[i], self.dilations[i]  # [2d, B, 512]
            slot = t % (2 * d)
            stacked = torch.cat([buf[slot], buf[(t + d) % (2 * d)], now], 1)  # a copy, taken before the write
            buf[slot] = now
            return stacked

        if self.kernels != "torch":  # the fused kernels read the counter from the device
            logits = self.step_on_device(state, torch.tensor(t, dtype=torch.int64, device=self.device), x_in, cond)
        else:
            logits = self._step(x_in, start_taps, self._torch_layers(taps), cond)
        state.t = t + 1
        return logits

    def step_on_device(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor,
                       cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The same step with the counter ``t`` an int64 device scalar: every slot is computed on
        the device and every write is in place, so the step can be captured in a CUDA graph and
        replayed with no host work. ``state.t`` is left to the caller."""
        one = t.view(1)

        def start_taps() -> tuple[torch.Tensor, torch.Tensor]:
            buf = state.start_taps  # [2, B]
            x2, x1 = buf.index_select(0, one % 2)[0], buf.index_select(0, (one + 1) % 2)[0]  # copies
            buf.index_copy_(0, one % 2, x_in[None])
            return x2, x1

        def taps(i: int, now: torch.Tensor) -> torch.Tensor:
            buf, d = state.buffers[i], self.dilations[i]
            slot = one % (2 * d)
            stacked = torch.cat([buf.index_select(0, slot)[0], buf.index_select(0, (one + d) % (2 * d))[0], now], 1)
            buf.index_copy_(0, slot, now[None])
            return stacked

        if self.kernels == "triton":
            return self._fused_step(state, t, x_in, cond)
        if self.kernels == "persistent":  # one teacher-forced step (its logits: a copy, the scratch is reused)
            return self.persistent(x_in.shape[0]).run(state, t, 1, cond, forced=x_in[None]).clone()
        return self._step(x_in, start_taps, self._torch_layers(taps), cond)

    def _step(self, x_in: torch.Tensor, start_taps, layers, cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One step. ``start_taps()`` -> the inputs at t-2, t-1 (and stores x_in); ``layers(l, skip,
        cond_layers)`` runs the 30 gated layers (storing each layer's input in its ring buffer) and
        returns the skip sum."""
        cond_layers, cond_out = cond
        x2, x1 = start_taps()  # startconv over the scalar input stream: taps (t-2, t-1, t)
        l = x2[:, None] * self.start_w[0] + x1[:, None] * self.start_w[1] + x_in[:, None] * self.start_w[2]
        l = l + self.start_b  # [B, 512] fp32
        skip = torch.addmm(self.skip_start_b, l, self.skip_start_w)  # [B, 256] fp32
        skip = layers(l, skip, cond_layers)
        s = F.relu(F.relu(skip) @ self.out1_w + cond_out)  # [B, 256]
        return torch.addmm(self.logits_b, s, self.logits_w)  # [B, 256]

    def _torch_layers(self, taps):
        """The layer stack in PyTorch ops; ``taps(i, now)`` -> layer i's inputs at t-2d, t-d and t
        stacked [B, 1536] (and stores ``now``)."""
        cdt, mdt = self.compute_dtype, self.mm_dtype  # stored / rounded to; multiplied in
        last = len(self.dilations) - 1

        def run(l: torch.Tensor, skip: torch.Tensor, cond_layers: torch.Tensor) -> torch.Tensor:
            for i in range(len(self.dilations)):
                z = (taps(i, l.to(cdt)).to(mdt) @ self.dil_mm[i]).float() + cond_layers[:, i]  # [B, 1024]
                g = torch.sigmoid(z[:, :RESIDUAL]) * torch.tanh(z[:, RESIDUAL:])  # [B, 512]
                rs = (g.to(cdt).to(mdt) @ self.rs_mm[i]).float() + self.rs_b[i]  # [B, 768] (or [B, 256] last)
                if i < last:
                    l = l + rs[:, :RESIDUAL]
                    skip = skip + rs[:, RESIDUAL:]
                else:
                    skip = skip + rs
            return skip

        return run

    def _fused_step(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor,
                    cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The same step as fused Triton kernels (:mod:`onss_tui.engine.kernels`): two for the
        start, two a layer, two for the head; ``t`` is the step, an int64 device scalar. Every
        state write is in place (capturable in a CUDA graph); ``state.t`` is left to the caller."""
        from onss_tui.engine import kernels as fused

        cond_layers, cond_out = cond
        dtype = self.dil_w[0].dtype  # below float32, each layer's input is staged in it for the next gate
        lq = None if dtype == torch.float32 else x_in.new_empty(x_in.shape[0], self.dil_w[0].shape[0] // 3, dtype=dtype)
        l, skip = fused.start(state.start_taps, t, x_in, self.start_w, self.start_b, self.skip_start_w,
                              self.skip_start_b, lq=lq)  # [B, 512], [B, 256]
        last = len(self.dilations) - 1
        for i, d in enumerate(self.dilations):  # l, lq and skip are updated in place
            fused.layer(state.buffers[i], t, l, self.dil_w[i], cond_layers[:, i], self.rs_w[i], self.rs_b[i], skip, d,
                        residual=i < last, lq=lq)
        return fused.head(skip, self.out1_w, cond_out, self.logits_w, self.logits_b)  # [B, 256]

    def draw(self, logits: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, codes: torch.Tensor,
             prev: torch.Tensor) -> None:
        """Sample step ``t`` (an int64 device scalar) in place: ``codes[:, t]`` <- the class drawn
        from ``logits`` at U(key, t), ``prev`` <- the next input. On the device, no host sync."""
        if self.kernels != "torch":
            from onss_tui.engine import kernels as fused

            fused.sample(logits, keys, t, codes, prev)
            return
        k = sample(logits, uniform(keys, t))  # [B, 1]
        codes.index_copy_(1, t.view(1), k.to(torch.uint8))
        prev.copy_((k[:, 0].to(torch.float32) - 128.0) / 128.0)

    # -- teacher forcing -----------------------------------------------------------------------
    @torch.no_grad()
    def teacher_forced(self, x_scaled: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """Run the incremental decoder fed the true previous sample: [B, T], [B, F, 16] -> log-probs [B, T, 256]."""
        batch, length = x_scaled.shape
        x_scaled = x_scaled.to(self.device, torch.float32)
        enc = enc.to(self.device, torch.float32)
        state = self.fresh_state(batch)
        out = torch.empty(batch, length, 256, dtype=torch.float32)
        prev = torch.zeros(batch, device=self.device)
        cond = None
        for t in range(length):
            if t % HOP == 0:
                cond = self.condition(enc[:, t // HOP])
            logits = self.step(state, prev, cond)
            out[:, t] = torch.log_softmax(logits, -1).cpu()
            prev = x_scaled[:, t]
        self.check()
        return out


class Generation:
    """Sampling B sounds from their encodings; advance it in chunks, save and restore it exactly.

    A sound's samples depend only on its encoding, its key (from the seed and its sound id) and
    the weights: not on its batch neighbours, the chunking, or interruptions.
    """

    def __init__(self, decoder: PackedDecoder, enc: torch.Tensor, keys: torch.Tensor):
        self.decoder = decoder
        self.enc = enc.to(decoder.device, torch.float32)  # [B, F, 16]
        self.keys = keys.to(decoder.device)  # [B] int64
        batch, frames, _ = self.enc.shape
        self.total = frames * HOP
        self.state = decoder.fresh_state(batch)
        self.codes = torch.zeros(batch, self.total, dtype=torch.uint8, device=decoder.device)  # classes k
        self.prev = torch.zeros(batch, device=decoder.device)  # fed input for the next step
        self._cond = None
        self._cond_frame = -1
        self._host_parts: list = []  # (end column, pinned host copy, its CUDA event): compact_state_later
        self._copy_stream: torch.cuda.Stream | None = None  # made by the first compact_state_later on a GPU

    @property
    def t(self) -> int:
        return self.state.t

    @property
    def done(self) -> bool:
        return self.state.t >= self.total

    @torch.no_grad()
    def advance(self, steps: int) -> int:
        """Generate up to ``steps`` more samples; return how many were made."""
        dec = self.decoder
        made = 0
        while made < steps and self.state.t < self.total:
            t = self.state.t
            if t // HOP != self._cond_frame:
                self._cond_frame = t // HOP
                self._cond = dec.condition(self.enc[:, self._cond_frame])
            if dec.kernels == "persistent":  # up to the end of the frame in one launch
                n = min(steps - made, HOP - t % HOP, self.total - t)
                self._persistent_steps(torch.tensor(t, dtype=torch.int64, device=dec.device), n)
                self.state.t = t + n
                made += n
                continue
            if dec.kernels == "triton":  # the fused step and sampler read the counter from the device
                at = torch.tensor(t, dtype=torch.int64, device=dec.device)
                logits = dec.step_on_device(self.state, at, self.prev, self._cond)
                self.state.t = t + 1
                dec.draw(logits, self.keys, at, self.codes, self.prev)
            else:
                logits = dec.step(self.state, self.prev, self._cond)
                k = sample(logits, uniform(self.keys, t))[:, 0]  # [B]
                self.codes[:, t] = k.to(torch.uint8)
                self.prev = (k.to(torch.float32) - 128.0) / 128.0
            made += 1
        return made

    def _persistent_steps(self, t: torch.Tensor, n: int, forced: torch.Tensor | None = None) -> None:
        """``n`` steps from the device step ``t`` in one persistent launch, within the current
        frame (``t`` unchanged): sampled, or fed ``forced`` [B, n] without the head (the replay
        that rebuilds a state)."""
        runner = self.decoder.persistent(self.prev.shape[0])
        if forced is None:
            runner.run(self.state, t, n, self._cond, prev=self.prev, keys=self.keys, codes=self.codes)
        else:
            runner.run(self.state, t, n, self._cond, forced=forced.T, head=False)

    def check(self) -> None:
        """Raise if the samples so far cannot be trusted (a persistent launch stalled: see
        :mod:`onss_tui.engine.persistent`). The saves call it; call it before using :attr:`codes`."""
        self.decoder.check()

    def state_dict(self) -> dict:
        """A CPU snapshot from which :meth:`load_state_dict` continues bit-exactly: the ring
        buffers themselves (about 6.3 MB a voice in bf16, so big batches prefer :meth:`compact_state`)."""
        self.check()
        return {
            "decoder": self.state.to_dict(),
            "codes": _snapshot(self.codes[:, : self.state.t]),
            "prev": _snapshot(self.prev),
            "keys": _snapshot(self.keys),
            "total": self.total,
        }

    def compact_state(self) -> dict:
        """The samples so far and the step, without the ring buffers (B x t bytes instead of
        6.3 MB a voice): :meth:`load_state_dict` rebuilds the buffers by replaying the last
        ``receptive_field`` steps, fed the saved samples, through the same step function, so the
        rebuilt state and every later sample are bit-identical."""
        self.check()
        return {"t": self.state.t, "codes": _snapshot(self.codes[:, : self.state.t]), "keys": _snapshot(self.keys),
                "total": self.total}

    def compact_state_later(self) -> Callable[[], dict]:
        """:meth:`compact_state` without stalling a GPU: the samples made since the last call are
        copied to pinned host memory on a side stream, behind the steps already queued, and the
        host does not wait for them. Returns a function, for the writer thread, that waits for
        the copy and builds the state. (Later steps only write later columns of the codes, so
        the columns being copied stay as they are.) On a CPU the state is taken at once."""
        if self.codes.device.type != "cuda":
            state = self.compact_state()
            return lambda: state
        t, dev = self.state.t, self.codes.device
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(dev)
        side = self._copy_stream
        side.wait_stream(torch.cuda.current_stream(dev))  # after the steps queued so far
        parts, start = self._host_parts, (self._host_parts[-1][0] if self._host_parts else 0)
        if t > start:
            with torch.cuda.stream(side):
                chunk = self.codes[:, start:t].contiguous()  # [B, t - start] on the device
                host = torch.empty(chunk.shape, dtype=torch.uint8, pin_memory=True)
                host.copy_(chunk, non_blocking=True)
                done = torch.cuda.Event()
                done.record(side)
            parts.append((t, host, done))
        mine = list(parts)
        keys, total = _snapshot(self.keys), self.total
        words = []  # the persistent launches' barrier words, behind the same steps: were they all sound?
        runners = self.decoder.persistent_runners()
        if runners:
            with torch.cuda.stream(side):
                for runner in runners:
                    word = torch.empty(1, dtype=torch.int32, pin_memory=True)
                    word.copy_(runner.bar, non_blocking=True)
                    words.append((word, runner.spin_limit))
                checked = torch.cuda.Event()
                checked.record(side)

        def state() -> dict:
            for _, _, done in mine:
                done.synchronize()
            if words:
                from onss_tui.engine.persistent import stalled

                checked.synchronize()
                for word, spins in words:
                    stalled(int(word), spins)  # raises: these samples are not saved
            codes = torch.cat([h for _, h, _ in mine], 1) if mine else torch.zeros(len(keys), 0, dtype=torch.uint8)
            return {"t": t, "codes": codes, "keys": keys, "total": total}

        return state

    def load_state_dict(self, d: dict) -> None:
        """Continue from a :meth:`state_dict` or a :meth:`compact_state`. Copies into the existing
        tensors (a captured CUDA graph keeps pointing at them)."""
        self._host_parts = []  # the host copies of compact_state_later start over
        if int(d["total"]) != self.total or not torch.equal(d["keys"].cpu(), self.keys.cpu()):
            raise ValueError("saved generator state belongs to other sounds (keys or length differ)")
        if "decoder" not in d:
            self._rebuild(int(d["t"]), d["codes"])
            return
        saved = DecoderState.from_dict(d["decoder"], self.decoder.device)
        if len(saved.buffers) != len(self.state.buffers) or any(
                a.shape != b.shape for a, b in zip(saved.buffers, self.state.buffers)):
            raise ValueError("saved generator state has another decoder shape")
        self.state.start_taps.copy_(saved.start_taps)
        for mine, theirs in zip(self.state.buffers, saved.buffers):
            mine.copy_(theirs)
        self.state.t = saved.t
        self.codes.zero_()
        self.codes[:, : self.state.t] = d["codes"].to(self.decoder.device)
        self.prev.copy_(d["prev"].to(self.decoder.device))
        self._cond_frame = -1

    @torch.no_grad()
    def _rebuild(self, t: int, codes: torch.Tensor) -> None:
        """The decoder state at step t from the samples before it (see :meth:`compact_state`)."""
        if codes.shape != (self.codes.shape[0], t) or not 0 <= t <= self.total:
            raise ValueError("saved generator state does not match this batch")
        dev = self.decoder.device
        self.codes.zero_()
        self.codes[:, :t] = codes.to(dev)
        self.state.start_taps.zero_()
        for buf in self.state.buffers:
            buf.zero_()
        scaled = (self.codes[:, :t].to(torch.float32) - 128.0) / 128.0  # [B, t]: the samples
        fed = F.pad(scaled, (1, 0))  # [B, t + 1]: step s is fed x[s] = sample s - 1 (0 at s = 0)
        s = max(0, t - self.decoder.receptive_field)
        self.state.t = s
        self._cond_frame = -1
        while s < t:
            if s // HOP != self._cond_frame:
                self._set_condition(s // HOP)
            if self.decoder.kernels == "persistent":  # to the end of the frame in one launch, no head
                n = min(t - s, HOP - s % HOP)
                self._persistent_steps(torch.tensor(s, dtype=torch.int64, device=dev), n, forced=fed[:, s:s + n])
                self.state.t = s = s + n
                continue
            self._replay_step(fed[:, s])
            s += 1
        self.prev.copy_(fed[:, t])
        self._cond_frame = -1

    def _set_condition(self, frame: int) -> None:
        self._cond = self.decoder.condition(self.enc[:, frame])
        self._cond_frame = frame

    def _replay_step(self, x_in: torch.Tensor) -> None:
        self.decoder.step(self.state, x_in, self._cond)
