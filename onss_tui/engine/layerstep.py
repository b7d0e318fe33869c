"""The layer step: how one generation step runs, chosen once when a PackedDecoder is built.

    torch        PyTorch ops. The ring-buffer slots come from the host's step counter (plain
                 indexing), or in :meth:`~LayerStep.step_on_device` from an int64 device scalar
                 (index_select / index_copy_: capturable in a CUDA graph)
    triton       the fused kernels (:mod:`onss_tui.engine.kernels`: 66 launches a step), the
                 counter always read on the device
    persistent   many steps in one launch, up to the end of a 512-sample frame
                 (:mod:`onss_tui.engine.persistent`; batches up to 64)

Each one gives what the generators ask of a step, and nothing else in the engine depends on
which one it is:

    step(state, x_in, cond)                one teacher-forced step at the host counter state.t
                                           -> logits [B, 256] (scoring, and Generation's replay)
    step_on_device(state, t, x_in, cond)   the same at the device counter t, every write in place
    draw(logits, keys, t, codes, prev)     codes[:, t] and prev <- the class drawn at U(key, t)
    generate(gen, n)                       Generation.advance's chunk: up to n sampled steps
                                           within the frame; returns how many
    device_steps(gen, n)                   DeviceGeneration's chunk: n sampled steps from gen.t_dev
    replay(gen, s, t, fed)                 the rebuild of a compact state: teacher-forced steps
                                           from s towards t, fed ``fed`` [B, t + 1]; returns how many

A generation keeps one layer step throughout (each sums in its own order), so a resume replays
its state through the step that made it and stays bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from onss_tui.engine.bf16cpu import matmul_dtype, widen
from onss_tui.model.decoder import RESIDUAL
from onss_tui.model.encoder import HOP
from onss_tui.model.rng import uniform

if TYPE_CHECKING:
    from onss_tui.engine.fastgen import DecoderState, Generation, PackedDecoder
    from onss_tui.engine.graphgen import DeviceGeneration
    from onss_tui.engine.persistent import Persistent

Cond = tuple[torch.Tensor, torch.Tensor]  # a frame's conditioning: cond_layers [B, n, 1024], cond_out [B, 256]

__all__ = ["LayerStep", "TorchStep", "TritonStep", "PersistentStep", "LAYER_STEPS", "sample"]


def sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Magenta's inverse-CDF rule: logits [B, 256], uniforms [B] -> classes [B, 1] (int64), the
    count of CDF entries below u, clamped to 255 (float rounding can leave the CDF under 1)."""
    cdf = torch.cumsum(torch.softmax(logits, -1), -1)  # [B, 256]
    return torch.searchsorted(cdf, u[:, None]).clamp_(max=255)


class LayerStep:
    """One way to run a step, for one :class:`~onss_tui.engine.fastgen.PackedDecoder` (``packed``:
    its weights, dilations and device). ``gen`` is a Generation (or DeviceGeneration) of it."""

    kernels = ""  # the name a recipe and ``onss bench --kernels`` use

    def __init__(self, packed: PackedDecoder) -> None:
        self.packed = packed

    @staticmethod
    def why_unavailable(device: torch.device) -> str | None:
        """None when this step can run on ``device``; otherwise the reason, with the fix."""
        return None

    def step(self, state: DecoderState, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        raise NotImplementedError

    def step_on_device(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        raise NotImplementedError

    def draw(self, logits: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, codes: torch.Tensor,
             prev: torch.Tensor) -> None:
        raise NotImplementedError

    def generate(self, gen: Generation, n: int) -> int:
        raise NotImplementedError

    def device_steps(self, gen: DeviceGeneration, n: int) -> None:
        """``n`` steps from the device counter ``gen.t_dev``, each drawn into ``gen.codes`` and
        ``gen.prev`` and the counter advanced, nothing from the host (capturable)."""
        for _ in range(n):
            logits = self.step_on_device(gen.state, gen.t_dev, gen.prev, gen._cond)
            self.draw(logits, gen.keys, gen.t_dev, gen.codes, gen.prev)  # codes[:, t], prev
            gen.t_dev.add_(1)

    def replay(self, gen: Generation, s: int, t: int, fed: torch.Tensor) -> int:
        """Step ``s`` of a rebuild, fed ``fed[:, s]``, through the generation's own step."""
        gen._replay_step(fed[:, s])
        return 1

    def runners(self) -> list[Persistent]:
        """The persistent kernel's runners made so far (one per batch size; none for the others)."""
        return []

    def check(self) -> None:
        """Raise :class:`~onss_tui.engine.persistent.BarrierStall` if a launch stalled (a no-op
        for the steps that have no barriers)."""


class TorchStep(LayerStep):
    """The step in PyTorch ops. Below float32 on a CPU the products are taken in float32 on the
    exact widening of the bfloat16 operands (:mod:`onss_tui.engine.bf16cpu`)."""

    kernels = "torch"

    def __init__(self, packed: PackedDecoder) -> None:
        super().__init__(packed)
        # what the layers multiply by: the weights themselves, or on a CPU their float32 widening
        self.mm_dtype = matmul_dtype(packed.device, packed.compute_dtype)
        self.dil_mm, self.rs_mm = widen(packed.dil_w, self.mm_dtype), widen(packed.rs_w, self.mm_dtype)

    def step(self, state: DecoderState, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        """The ring-buffer slots from the host's step counter ``state.t`` (plain indexing)."""
        t, dilations = state.t, self.packed.dilations

        def start_taps() -> tuple[torch.Tensor, torch.Tensor]:
            x2, x1 = state.start_taps[t % 2].clone(), state.start_taps[(t + 1) % 2]
            state.start_taps[t % 2] = x_in  # (after the copy: x2 was that row)
            return x2, x1

        def taps(i: int, now: torch.Tensor) -> torch.Tensor:
            buf, d = state.buffers[i], dilations[i]  # [2d, B, 512]
            slot = t % (2 * d)
            stacked = torch.cat([buf[slot], buf[(t + d) % (2 * d)], now], 1)  # a copy, taken before the write
            buf[slot] = now
            return stacked

        return self._step(x_in, start_taps, taps, cond)

    def step_on_device(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Every slot computed on the device from ``t`` and every write in place."""
        one, dilations = t.view(1), self.packed.dilations

        def start_taps() -> tuple[torch.Tensor, torch.Tensor]:
            buf = state.start_taps  # [2, B]
            x2, x1 = buf.index_select(0, one % 2)[0], buf.index_select(0, (one + 1) % 2)[0]  # copies
            buf.index_copy_(0, one % 2, x_in[None])
            return x2, x1

        def taps(i: int, now: torch.Tensor) -> torch.Tensor:
            buf, d = state.buffers[i], dilations[i]
            slot = one % (2 * d)
            stacked = torch.cat([buf.index_select(0, slot)[0], buf.index_select(0, (one + d) % (2 * d))[0], now], 1)
            buf.index_copy_(0, slot, now[None])
            return stacked

        return self._step(x_in, start_taps, taps, cond)

    def _step(self, x_in: torch.Tensor, start_taps: Callable[[], tuple[torch.Tensor, torch.Tensor]],
              taps: Callable[[int, torch.Tensor], torch.Tensor], cond: Cond) -> torch.Tensor:
        """One step. ``start_taps()`` -> the inputs at t-2, t-1 (and stores x_in); ``taps(i, now)``
        -> layer i's inputs at t-2d, t-d and t stacked [B, 1536] (and stores ``now``)."""
        p = self.packed
        cdt, mdt = p.compute_dtype, self.mm_dtype  # stored / rounded to; multiplied in
        cond_layers, cond_out = cond
        x2, x1 = start_taps()  # startconv over the scalar input stream: taps (t-2, t-1, t)
        l = x2[:, None] * p.start_w[0] + x1[:, None] * p.start_w[1] + x_in[:, None] * p.start_w[2]
        l = l + p.start_b  # [B, 512] fp32
        skip = torch.addmm(p.skip_start_b, l, p.skip_start_w)  # [B, 256] fp32
        last = len(p.dilations) - 1
        for i in range(len(p.dilations)):
            z = (taps(i, l.to(cdt)).to(mdt) @ self.dil_mm[i]).float() + cond_layers[:, i]  # [B, 1024]
            g = torch.sigmoid(z[:, :RESIDUAL]) * torch.tanh(z[:, RESIDUAL:])  # [B, 512]
            rs = (g.to(cdt).to(mdt) @ self.rs_mm[i]).float() + p.rs_b[i]  # [B, 768] (or [B, 256] last)
            if i < last:
                l = l + rs[:, :RESIDUAL]
                skip = skip + rs[:, RESIDUAL:]
            else:
                skip = skip + rs
        s = F.relu(F.relu(skip) @ p.out1_w + cond_out)  # [B, 256]
        return torch.addmm(p.logits_b, s, p.logits_w)  # [B, 256]

    def draw(self, logits: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, codes: torch.Tensor,
             prev: torch.Tensor) -> None:
        k = sample(logits, uniform(keys, t))  # [B, 1]
        codes.index_copy_(1, t.view(1), k.to(torch.uint8))
        prev.copy_((k[:, 0].to(torch.float32) - 128.0) / 128.0)

    def generate(self, gen: Generation, n: int) -> int:
        """One step at the host counter, sampled on the host's terms (``gen.prev`` is replaced)."""
        t = gen.state.t
        logits = self.packed.step(gen.state, gen.prev, gen._cond)
        k = sample(logits, uniform(gen.keys, t))[:, 0]  # [B]
        gen.codes[:, t] = k.to(torch.uint8)
        gen.prev = (k.to(torch.float32) - 128.0) / 128.0
        return 1


class TritonStep(LayerStep):
    """The step as fused Triton kernels: two for the start, two a layer, two for the head, one to
    sample; they read the step counter from the device, so even a host-counted step passes it there."""

    kernels = "triton"

    @staticmethod
    def why_unavailable(device: torch.device) -> str | None:
        from onss_tui.engine.kernels import why_unavailable

        return why_unavailable(device)

    def step(self, state: DecoderState, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        return self.step_on_device(state, torch.tensor(state.t, dtype=torch.int64, device=self.packed.device), x_in,
                                   cond)

    def step_on_device(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Every state write in place (capturable in a CUDA graph); ``state.t`` is left to the caller."""
        from onss_tui.engine import kernels as fused

        p = self.packed
        cond_layers, cond_out = cond
        dtype = p.dil_w[0].dtype  # below float32, each layer's input is staged in it for the next gate
        lq = None if dtype == torch.float32 else x_in.new_empty(x_in.shape[0], p.dil_w[0].shape[0] // 3, dtype=dtype)
        l, skip = fused.start(state.start_taps, t, x_in, p.start_w, p.start_b, p.skip_start_w,
                              p.skip_start_b, lq=lq)  # [B, 512], [B, 256]
        last = len(p.dilations) - 1
        for i, d in enumerate(p.dilations):  # l, lq and skip are updated in place
            fused.layer(state.buffers[i], t, l, p.dil_w[i], cond_layers[:, i], p.rs_w[i], p.rs_b[i], skip, d,
                        residual=i < last, lq=lq)
        return fused.head(skip, p.out1_w, cond_out, p.logits_w, p.logits_b)  # [B, 256]

    def draw(self, logits: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, codes: torch.Tensor,
             prev: torch.Tensor) -> None:
        from onss_tui.engine import kernels as fused

        fused.sample(logits, keys, t, codes, prev)

    def generate(self, gen: Generation, n: int) -> int:
        """One step: the fused step and sampler read the counter from the device."""
        t = gen.state.t
        at = torch.tensor(t, dtype=torch.int64, device=self.packed.device)
        logits = self.step_on_device(gen.state, at, gen.prev, gen._cond)
        gen.state.t = t + 1
        self.draw(logits, gen.keys, at, gen.codes, gen.prev)
        return 1


class PersistentStep(TritonStep):
    """Many steps a launch (:class:`~onss_tui.engine.persistent.Persistent`, one runner and its
    scratch per batch size); a single step (teacher forcing) is a launch of one step."""

    kernels = "persistent"

    def __init__(self, packed: PackedDecoder) -> None:
        super().__init__(packed)
        self._runners: dict[int, Persistent] = {}  # batch -> engine.persistent.Persistent (its scratch)

    def runner(self, batch: int) -> Persistent:
        """The persistent kernel's runner for ``batch`` voices (made once per batch)."""
        if batch not in self._runners:
            from onss_tui.engine.persistent import Persistent

            self._runners[batch] = Persistent(self.packed, batch)
        return self._runners[batch]

    def runners(self) -> list[Persistent]:
        return list(self._runners.values())

    def check(self) -> None:
        """Raise :class:`~onss_tui.engine.persistent.BarrierStall` if a launch stalled (waits
        for the queued launches)."""
        for runner in self.runners():
            runner.check()

    def step_on_device(self, state: DecoderState, t: torch.Tensor, x_in: torch.Tensor, cond: Cond) -> torch.Tensor:
        """One teacher-forced step (its logits: a copy, the scratch is reused)."""
        return self.runner(x_in.shape[0]).run(state, t, 1, cond, forced=x_in[None]).clone()

    def generate(self, gen: Generation, n: int) -> int:
        """Up to the end of the frame in one launch."""
        t = gen.state.t
        n = min(n, HOP - t % HOP, gen.total - t)
        self._sampled(gen, torch.tensor(t, dtype=torch.int64, device=self.packed.device), n)
        gen.state.t = t + n
        return n

    def device_steps(self, gen: DeviceGeneration, n: int) -> None:
        """``n`` steps, one launch."""
        self._sampled(gen, gen.t_dev, n)
        gen.t_dev.add_(n)

    def replay(self, gen: Generation, s: int, t: int, fed: torch.Tensor) -> int:
        """To the end of the frame in one launch, fed the saved samples, without the head."""
        n = min(t - s, HOP - s % HOP)
        at = torch.tensor(s, dtype=torch.int64, device=self.packed.device)
        self.runner(gen.prev.shape[0]).run(gen.state, at, n, gen._cond, forced=fed[:, s:s + n].T, head=False)
        gen.state.t = s + n
        return n

    def _sampled(self, gen: Generation, t: torch.Tensor, n: int) -> None:
        """``n`` sampled steps from the device step ``t`` (left as it is), within the current frame."""
        self.runner(gen.prev.shape[0]).run(gen.state, t, n, gen._cond, prev=gen.prev, keys=gen.keys, codes=gen.codes)


LAYER_STEPS: dict[str, type[LayerStep]] = {s.kernels: s for s in (TorchStep, TritonStep, PersistentStep)}
