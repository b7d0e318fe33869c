"""The preview engine: a weighted spectral morph of the corner notes, on the CPU, in seconds.

Not NSynth: it lets a user hear layout, corner order and pitches on the device before hours of
GPU time. For a sound mixing instruments i with weights w_i at one pitch:

    |Y(f, t)| = sum_i w_i |X_i(f, t)|        magnitudes mixed by the grid weights
    angle Y   = angle X_k                    phases of the heaviest corner k
    y         = iSTFT(Y)                     Hann window 1024, hop 256, overlap-add
"""

from __future__ import annotations

import numpy as np

N_FFT = 1024
HOP = 256

__all__ = ["morph"]


def _frames(x: np.ndarray) -> np.ndarray:
    pad = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2 + HOP))
    n = 1 + (len(pad) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    return pad[idx]  # [n_frames, N_FFT]


def _stft(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    return np.fft.rfft(_frames(x) * window, axis=1)


def _istft(spec: np.ndarray, window: np.ndarray, length: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * window
    total = N_FFT + HOP * (len(frames) - 1)
    out = np.zeros(total)
    norm = np.zeros(total)
    for i, f in enumerate(frames):
        out[i * HOP : i * HOP + N_FFT] += f
        norm[i * HOP : i * HOP + N_FFT] += window**2
    out /= np.maximum(norm, 1e-8)
    return out[N_FFT // 2 : N_FFT // 2 + length]


def morph(notes: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Mix notes (same length) by weights; float32, the length of the notes."""
    length = len(notes[0])
    if len(notes) == 1:
        return np.asarray(notes[0], dtype=np.float32).copy()
    window = np.hanning(N_FFT + 1)[:-1]
    specs = [_stft(n, window) for n in notes]
    mag = sum(w * np.abs(s) for w, s in zip(weights, specs, strict=True))
    phase = np.angle(specs[int(np.argmax(weights))])
    return _istft(mag * np.exp(1j * phase), window, length).astype(np.float32)
