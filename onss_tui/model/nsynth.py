"""The NSynth WaveNet autoencoder as one object: load the checkpoint, encode, score, generate.

All public methods take and return numpy arrays; torch lives inside.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch

from onss_tui.engine.bf16cpu import Bf16ConvOnCpu
from onss_tui.engine.fastgen import Generation, PackedDecoder, check_kernels
from onss_tui.model.decoder import Decoder
from onss_tui.model.encoder import HOP, Encoder
from onss_tui.model.mulaw import INV_MU_LAW_TABLE, scaled_input
from onss_tui.model.rng import sound_keys
from onss_tui.model.weights import load_tf_variables, read_checkpoint_variables, variable_shapes
from onss_tui.vocab import PRECISIONS, torch_dtype

__all__ = ["NSynth"]


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}). "
            "Install the CUDA build of torch, or use device='cpu'."
        )
    return dev


class NSynth:
    """Encoder + decoder with the published ``wavenet-ckpt`` weights (or any with its names and shapes)."""

    def __init__(self, device: str | torch.device = "cpu", precision: str = "fp32", kernels: str = "torch"):
        self.device = _device(device)
        self.precision = _check_precision(precision)
        self.kernels = check_kernels(kernels)  # the generator's layer step: PyTorch ops or fused Triton kernels
        self.encoder = Encoder().eval()
        self.decoder = Decoder().eval()
        self._packed: PackedDecoder | None = None
        self.source = "random initialisation"

    # -- construction --------------------------------------------------------------------------
    @staticmethod
    def variable_shapes() -> dict[str, tuple[int, ...]]:
        """The 374 checkpoint variables the model needs, by name, with their TF shapes."""
        return variable_shapes(NSynth._layers_of(Encoder(), Decoder()))

    @staticmethod
    def _layers_of(encoder: Encoder, decoder: Decoder) -> dict:
        return {**encoder.tf_layers(), **decoder.tf_layers()}

    def _layers(self) -> dict:
        return self._layers_of(self.encoder, self.decoder)

    @classmethod
    def from_tf_variables(
        cls,
        variables: Mapping[str, np.ndarray],
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        source: str = "the variables",
    ) -> NSynth:
        """Build from arrays keyed by checkpoint names (``ae_startconv/W`` ...) in their TF shapes."""
        model = cls(device, precision)
        load_tf_variables(model._layers(), variables, source)
        model.encoder.to(model.device)
        model.decoder.to(model.device)
        model.source = source
        return model

    def with_precision(self, precision: str, kernels: str | None = None) -> NSynth:
        """The same weights (shared, not copied) run in another precision (and with other kernels)."""
        other = NSynth.__new__(NSynth)
        other.device, other.precision = self.device, _check_precision(precision)
        other.kernels = self.kernels if kernels is None else check_kernels(kernels)
        other.encoder, other.decoder, other.source = self.encoder, self.decoder, self.source
        other._packed = None
        return other

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        ema: bool = False,
        cache: bool = True,
    ) -> NSynth:
        """Load a TF checkpoint: the prefix, its ``.index``/``.data`` file, or the folder holding it.

        Raw weights by default, as Magenta's ``nsynth_generate`` used; ``ema=True`` loads the
        ExponentialMovingAverage shadows instead.
        """
        names = sorted(cls.variable_shapes())
        arrays, prefix = read_checkpoint_variables(path, names, ema=ema, cache=cache)
        label = f"{prefix}{' (EMA)' if ema else ''}"
        return cls.from_tf_variables(arrays, device, precision, source=label)

    # -- precision -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def precision_scope(self) -> Iterator[None]:
        """TF32 matmuls only under 'tf32'; bf16 autocast for the convolutional forms under 'bf16'
        (on a CPU its float32 emulation, :class:`Bf16ConvOnCpu`)."""
        cuda = torch.backends.cuda.matmul
        old = (cuda.allow_tf32, torch.backends.cudnn.allow_tf32)
        allow = self.precision == "tf32"
        cuda.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
        try:
            with torch.no_grad():
                if self.precision == "bf16" and self.device.type == "cpu":
                    with Bf16ConvOnCpu():
                        yield
                elif self.precision == "bf16":
                    with torch.autocast(self.device.type, dtype=torch.bfloat16):
                        yield
                else:
                    yield
        finally:
            cuda.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    def packed(self) -> PackedDecoder:
        if self._packed is None:
            self._packed = PackedDecoder(self.decoder, self.device, torch_dtype(self.precision), kernels=self.kernels)
        return self._packed

    # -- helpers -------------------------------------------------------------------------------
    def _audio(self, audio: np.ndarray) -> torch.Tensor:
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2:
            raise ValueError(f"audio must be [B, T], got shape {list(a.shape)}")
        return torch.from_numpy(np.array(a, dtype=np.float32)).to(self.device)  # a copy: inputs may be read-only

    def _enc(self, enc: np.ndarray) -> torch.Tensor:
        e = np.asarray(enc, dtype=np.float32)
        if e.ndim == 2:
            e = e[None]
        if e.ndim != 3 or e.shape[-1] != 16:
            raise ValueError(f"encodings must be [B, frames, 16], got shape {list(e.shape)}")
        return torch.from_numpy(np.array(e, dtype=np.float32)).to(self.device)

    # -- the API -------------------------------------------------------------------------------
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """float32 [B, T] in [-1, 1] with T % 512 == 0  ->  float32 [B, T // 512, 16]."""
        x = self._audio(audio)
        if x.shape[1] % HOP:
            raise ValueError(f"audio length {x.shape[1]} is not a multiple of {HOP}; pad or trim it first")
        with self.precision_scope():
            return self.encoder(scaled_input(x)).float().cpu().numpy()

    def log_probs(self, audio: np.ndarray, enc: np.ndarray, mode: str = "parallel") -> np.ndarray:
        """Teacher-forced log-softmax [B, T, 256]: sample t scored given audio[:t] and frame t // 512.

        ``parallel`` runs the convolutional form; ``incremental`` runs the generator's one-step
        decoder fed the true previous sample, as fast generation does.
        """
        x = scaled_input(self._audio(audio))
        e = self._enc(enc)
        if e.shape[0] != x.shape[0] or e.shape[1] * HOP < x.shape[1]:
            raise ValueError(f"encodings {list(e.shape)} do not cover audio {list(x.shape)}")
        if mode == "parallel":
            with self.precision_scope():
                return torch.log_softmax(self.decoder(x, e).float(), -1).cpu().numpy()
        if mode == "incremental":
            with self.precision_scope():
                return self.packed().teacher_forced(x, e).numpy()
        raise ValueError(f"mode must be 'parallel' or 'incremental', not {mode!r}")

    def generation(self, enc: np.ndarray, seed: int = 0, sound_ids: np.ndarray | None = None,
                   graphs: bool | None = None) -> Generation:
        """A resumable generation of one batch (advance it, save and restore its state_dict).

        On CUDA (or with ``graphs`` set) the step counter lives on the device and chunks of steps
        replay as CUDA graphs (:mod:`onss_tui.engine.graphgen`); the samples are the same either way."""
        e = self._enc(enc)
        ids = np.arange(e.shape[0]) if sound_ids is None else np.asarray(sound_ids, dtype=np.int64)
        if ids.shape != (e.shape[0],):
            raise ValueError(f"sound_ids must have one id per encoding ({e.shape[0]}), got {ids.shape}")
        keys = sound_keys(int(seed), torch.from_numpy(ids).to(self.device))
        if graphs is None:
            graphs = self.device.type == "cuda"
        if graphs:
            from onss_tui.engine.graphgen import DeviceGeneration

            return DeviceGeneration(self.packed(), e, keys, graphs=self.device.type == "cuda")
        return Generation(self.packed(), e, keys)

    def generate(
        self,
        enc: np.ndarray,
        seed: int = 0,
        sound_ids: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
        chunk: int = 512,
    ) -> np.ndarray:
        """Sample audio from encodings [B, frames, 16]  ->  float32 [B, frames * 512].

        Deterministic: sound i's audio depends only on its encoding, ``seed`` and its sound id
        (``sound_ids[i]``, default i), never on the rest of the batch.
        """
        gen = self.generation(enc, seed, sound_ids)
        with self.precision_scope():
            while not gen.done:
                gen.advance(chunk)
                if progress is not None:
                    progress(gen.t, gen.total)
        gen.check()
        return self.codes_to_audio(gen.codes.cpu().numpy())

    @staticmethod
    def codes_to_audio(codes: np.ndarray) -> np.ndarray:
        """Classes k in [0, 255] -> float32 audio through inverse mu-law (k = 128 gives 0.0)."""
        return INV_MU_LAW_TABLE[np.asarray(codes, dtype=np.int64)]

    def __repr__(self) -> str:
        return (f"NSynth(source={self.source!r}, device={str(self.device)!r}, precision={self.precision!r}, "
                f"kernels={self.kernels!r})")

