"""Generation with no host work per step, for the GPU.

:class:`~onss_tui.engine.fastgen.Generation` keeps the step counter on the host, which makes every
step a string of small kernel launches decided by Python: on a GPU the launches, not the maths,
set the pace (spec: ~5 ms per eager step at any batch). :class:`DeviceGeneration` produces the
same samples, bit for bit, with everything a step needs resident on the device:

    t            int64 device scalar; ring-buffer slots t mod 2d and (t + d) mod 2d computed from it
    cond         static [B, n, 1024] and [B, 256] buffers, refilled once per 512-sample frame
    sampling     u = U(key, t) and the inverse-CDF class, on the device; no host sync
    codes, prev  written in place at column t

Because no step reads anything from the host, ``chunk`` consecutive steps (a divisor of 512, so a
chunk never crosses a frame) are captured once as a CUDA graph and replayed: one launch per chunk.
On the CPU (and with ``graphs=False``) the same device-style step runs eagerly, which is what the
CPU tests check against the host-counter generator.
"""

from __future__ import annotations

import warnings

import torch

from onss_tui.engine.fastgen import Generation, PackedDecoder
from onss_tui.model.decoder import SKIP
from onss_tui.model.encoder import HOP

__all__ = ["DeviceGeneration"]


class DeviceGeneration(Generation):
    """:class:`Generation` with a device-resident step; on CUDA, chunks replay as a CUDA graph."""

    def __init__(self, decoder: PackedDecoder, enc: torch.Tensor, keys: torch.Tensor, chunk: int = 64,
                 graphs: bool | None = None):
        super().__init__(decoder, enc, keys)
        if chunk < 1 or HOP % chunk:
            raise ValueError(f"chunk must divide {HOP}, got {chunk}")
        dev = decoder.device
        batch = self.enc.shape[0]
        self.chunk = chunk
        self.graphs = dev.type == "cuda" if graphs is None else bool(graphs)
        if self.graphs and dev.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.t_dev = torch.zeros((), dtype=torch.int64, device=dev)  # == self.state.t, on the device
        self.cond_layers = torch.zeros(batch, len(decoder.dilations), decoder.gate_width, device=dev)
        self.cond_out = torch.zeros(batch, SKIP, device=dev)
        self._cond = (self.cond_layers, self.cond_out)  # refilled in place for each frame
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warm = False  # the first whole chunk on a GPU runs eagerly on a side stream

    # -- steps, nothing from the host ----------------------------------------------------------
    def _steps(self, n: int) -> None:
        """``n`` steps from ``t_dev`` (which they advance), as the layer step takes them: one by one,
        or (persistent) in one launch."""
        self.decoder.layer_step.device_steps(self, n)

    def _chunk_on_gpu(self) -> None:
        """One chunk: the first runs eagerly on a side stream (the warm-up a capture needs, and real
        steps of the generation), the second is captured, every later one is a replay."""
        if self._graph is None:
            if not self._warm:
                side = torch.cuda.Stream(self.decoder.device)
                side.wait_stream(torch.cuda.current_stream(self.decoder.device))
                with torch.cuda.stream(side):
                    self._steps(self.chunk)
                torch.cuda.current_stream(self.decoder.device).wait_stream(side)
                self._warm = True
                return
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):  # recorded only: nothing runs, the state is untouched
                    self._steps(self.chunk)
            except RuntimeError as exc:  # a driver or library that cannot capture: stay eager, same samples
                warnings.warn(f"CUDA graph capture failed ({exc}); generating without graphs", RuntimeWarning,
                              stacklevel=2)
                self.graphs = False
                self._steps(self.chunk)
                return
            self._graph = graph
        self._graph.replay()

    # -- the Generation interface --------------------------------------------------------------
    @torch.no_grad()
    def advance(self, steps: int) -> int:
        made = 0
        while made < steps and self.state.t < self.total:
            t = self.state.t
            if t // HOP != self._cond_frame:  # a new frame: refill the static conditioning
                self._set_condition(t // HOP)
            whole = t % self.chunk == 0 and steps - made >= self.chunk
            n = self.chunk if whole else 1
            if whole and self.graphs:
                self._chunk_on_gpu()
            else:
                self._steps(n)
            self.state.t = t + n
            made += n
        return made

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.t_dev.fill_(self.state.t)

    def _replay_step(self, x_in: torch.Tensor) -> None:
        """Teacher-forced, through the same device step generation uses (bit-identical state)."""
        self.t_dev.fill_(self.state.t)
        self.decoder.step_on_device(self.state, self.t_dev, x_in, self._cond)
        self.state.t += 1

    def _set_condition(self, frame: int) -> None:
        layers, out = self.decoder.condition(self.enc[:, frame])
        self.cond_layers.copy_(layers)
        self.cond_out.copy_(out)
        self._cond_frame = frame
