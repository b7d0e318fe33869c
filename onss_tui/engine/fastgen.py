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

How a step runs (PyTorch ops, the fused Triton kernels, or many steps a launch) is the
PackedDecoder's layer step (:mod:`onss_tui.engine.layerstep`), chosen once from ``kernels``.

Precision: ``fp32``/``tf32`` keep everything in float32 (tf32 lets CUDA matmuls use TF32 cores);
``bf16`` stores weights and layer states in bfloat16 and multiplies in bfloat16 with float32
accumulation, while the residual and skip sums, the gates, the conditioning and the softmax stay
in float32. On a CPU the PyTorch layer step takes the bfloat16 products in float32 instead, on
the exact float32 widening of the bfloat16 operands (:mod:`onss_tui.engine.bf16cpu`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch.nn import functional as F

from onss_tui.engine.layerstep import LAYER_STEPS, LayerStep, sample
from onss_tui.model.decoder import RESIDUAL, SKIP, Decoder
from onss_tui.model.encoder import HOP
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


def _bias(conv: torch.nn.Conv1d) -> torch.Tensor:
    """A convolution's bias [Cout] (every convolution of NSynth's decoder has one)."""
    if conv.bias is None:
        raise ValueError(f"{conv} has no bias: not a layer of NSynth's decoder")
    return conv.bias


def _convs(layers: torch.nn.ModuleList) -> list[torch.nn.Conv1d]:
    """The decoder's per-layer convolutions (a ModuleList's items, typed as what they are)."""
    return [cast(torch.nn.Conv1d, conv) for conv in layers]


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
    """The decoder's weights rearranged for one-sample steps, on one device, in one precision, and
    the layer step that runs them (``kernels``: :mod:`onss_tui.engine.layerstep`)."""

    def __init__(self, decoder: Decoder, device: torch.device | str = "cpu", compute_dtype: torch.dtype = torch.float32,
                 kernels: str = "torch"):
        dev = torch.device(device)
        cdt = compute_dtype
        step = LAYER_STEPS[check_kernels(kernels)]
        why = step.why_unavailable(dev)
        if why:
            raise RuntimeError(f"kernels {kernels!r} asked for, but {why}")
        self.device, self.compute_dtype, self.kernels = dev, cdt, kernels
        dilated, cond_map, res, skip = (_convs(m) for m in (decoder.dilated, decoder.cond_map, decoder.res,
                                                             decoder.skip))
        self.dilations: list[int] = [conv.dilation[0] for conv in dilated]
        n = len(self.dilations)

        def f32(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dev, torch.float32).contiguous()

        def low(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dev, cdt).contiguous()

        # startconv: 1 input channel, so its taps are three row vectors [3, 512]
        self.start_w = f32(decoder.startconv.weight[:, 0, :].T)  # [3, 512]
        self.start_b = f32(_bias(decoder.startconv))  # [512]
        self.skip_start_w = f32(_matrix(decoder.skip_start))  # [512, 256]
        self.skip_start_b = f32(_bias(decoder.skip_start))
        self.dil_all = low(torch.stack([_taps(c) for c in dilated]))  # [n, 1536, 1024]
        self.dil_w = list(self.dil_all.unbind(0))  # n x [1536, 1024], views
        # res_i and skip_i read the same gate output: one [512, 768] matrix (skip only for the last layer)
        self.rs_w: list[torch.Tensor] = []
        self.rs_b: list[torch.Tensor] = []
        for i in range(n):
            if i < n - 1:
                self.rs_w.append(low(torch.cat([_matrix(res[i]), _matrix(skip[i])], 1)))
                self.rs_b.append(f32(torch.cat([_bias(res[i]), _bias(skip[i])])))
            else:
                self.rs_w.append(low(_matrix(skip[i])))
                self.rs_b.append(f32(_bias(skip[i])))
        # all conditioning in one matmul per frame: [16, n*1024 + 256], biases folded in
        self.cond_w = f32(
            torch.cat([_matrix(c) for c in cond_map] + [_matrix(decoder.cond_map_out1)], 1)
        )
        self.cond_b = f32(
            torch.cat(
                [_bias(c) + _bias(d) for c, d in zip(cond_map, dilated)]
                + [_bias(decoder.cond_map_out1) + _bias(decoder.out1)]
            )
        )
        self.out1_w = f32(_matrix(decoder.out1))  # [256, 256]
        self.logits_w = f32(_matrix(decoder.logits))  # [256, 256]
        self.logits_b = f32(_bias(decoder.logits))
        self.gate_width = dilated[0].out_channels
        self._rs_all: tuple[torch.Tensor, torch.Tensor] | None = None
        self.layer_step: LayerStep = step(self)  # torch, triton or persistent, for good

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

    def check(self) -> None:
        """Raise :class:`~onss_tui.engine.persistent.BarrierStall` if a persistent launch of this
        decoder stalled (a no-op for the other layer steps; waits for the queued launches)."""
        self.layer_step.check()

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
        """Feed x_in [B] (the previous sample as q / 128) at step state.t; return logits [B, 256] fp32."""
        logits = self.layer_step.step(state, x_in, cond)
        state.t += 1
        return logits

    def step_on_device(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor,
                       cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The same step with the counter ``t`` an int64 device scalar: every slot is computed on
        the device and every write is in place, so the step can be captured in a CUDA graph and
        replayed with no host work. ``state.t`` is left to the caller."""
        return self.layer_step.step_on_device(state, t, x_in, cond)

    def draw(self, logits: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, codes: torch.Tensor,
             prev: torch.Tensor) -> None:
        """Sample step ``t`` (an int64 device scalar) in place: ``codes[:, t]`` <- the class drawn
        from ``logits`` at U(key, t), ``prev`` <- the next input. On the device, no host sync."""
        self.layer_step.draw(logits, keys, t, codes, prev)

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
        for start in range(0, length, HOP):  # a frame at a time: its conditioning, its steps
            cond = self.condition(enc[:, start // HOP])
            for t in range(start, min(start + HOP, length)):
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
        # the current frame's conditioning (cond_layers [B, n, 1024], cond_out [B, 256]): none yet
        self._cond: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))
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
            made += dec.layer_step.generate(self, steps - made)  # within the frame
        return made

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
            now = self.compact_state()
            return lambda: now
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
        runners = self.decoder.layer_step.runners()
        if runners:
            with torch.cuda.stream(side):
                for runner in runners:
                    word = torch.empty(1, dtype=torch.int32, pin_memory=True)
                    word.copy_(runner.bar, non_blocking=True)
                    words.append((word, runner.spin_limit))
                checked = torch.cuda.Event()
                checked.record(side)

        def build() -> dict:
            for _, _, done in mine:
                done.synchronize()
            if words:
                from onss_tui.engine.persistent import stalled

                checked.synchronize()
                for word, spins in words:
                    stalled(int(word), spins)  # raises: these samples are not saved
            codes = torch.cat([h for _, h, _ in mine], 1) if mine else torch.zeros(len(keys), 0, dtype=torch.uint8)
            return {"t": t, "codes": codes, "keys": keys, "total": total}

        return build

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
        self.codes.zero_()
        self.codes[:, :t] = codes.to(self.decoder.device)
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
            s += self.decoder.layer_step.replay(self, s, t, fed)  # teacher-forced, within the frame
        self.prev.copy_(fed[:, t])
        self._cond_frame = -1

    def _set_condition(self, frame: int) -> None:
        self._cond = self.decoder.condition(self.enc[:, frame])
        self._cond_frame = frame

    def _replay_step(self, x_in: torch.Tensor) -> None:
        """One teacher-forced step of a rebuild, through the step :meth:`advance` takes."""
        self.decoder.step(self.state, x_in, self._cond)
