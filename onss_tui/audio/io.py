"""Reading and writing audio: soundfile for every container it knows, soxr for resampling.

Everything the pipeline handles is 16 kHz mono float32 in [-1, 1]. Errors are
:class:`AudioError` with a message that names the file and says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from onss_tui.atomic import atomic_write
from onss_tui.vocab import SAMPLE_RATE  # re-exported (__all__)

AUDIO_SUFFIXES = (".wav", ".aif", ".aiff", ".flac", ".mp3", ".ogg")

__all__ = ["AudioError", "AudioInfo", "SAMPLE_RATE", "AUDIO_SUFFIXES", "probe", "load", "fit_length", "save_wav"]


class AudioError(Exception):
    """An audio file could not be used; the message names the file and the fix."""


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    samplerate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0


def _open_error(path: Path, exc: Exception) -> AudioError:
    if path.is_symlink() and not path.exists():
        return AudioError(f"{path}: a broken or looping symbolic link. Point it at the real file or replace it.")
    if not path.exists():
        return AudioError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        return AudioError(f"{path}: is a folder, not an audio file.")
    if not os.access(path, os.R_OK):
        return AudioError(f"{path}: permission denied. Make it readable (chmod a+r).")
    if path.stat().st_size == 0:
        return AudioError(f"{path}: the file is empty (0 bytes). Export the sound again.")
    return AudioError(
        f"{path}: not a readable audio file ({exc}). Convert it to WAV, AIFF or FLAC "
        f"(any of {', '.join(AUDIO_SUFFIXES)} that soundfile reads)."
    )


def probe(path: str | os.PathLike) -> AudioInfo:
    """Rate, channels, length and format of a file, without reading its samples."""
    p = Path(path)
    try:
        info = sf.info(str(p))
    except Exception as exc:  # soundfile raises several types for bad files
        raise _open_error(p, exc) from exc
    return AudioInfo(p, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file as mono float32 at ``sample_rate`` (channels averaged, soxr high quality)."""
    p = Path(path)
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:
        raise _open_error(p, exc) from exc
    if data.shape[0] == 0:
        raise AudioError(f"{p}: contains no samples. Export the sound again.")
    if not np.isfinite(data).all():
        raise AudioError(f"{p}: contains NaN or infinite samples. Re-export it as 16- or 24-bit PCM.")
    mono = data.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim to ``length`` samples, or zero-pad at the end up to it (as Magenta's load_batch_audio)."""
    out = np.zeros(length, dtype=np.float32)
    n = min(length, audio.shape[-1])
    out[:n] = audio[:n]
    return out


def save_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
             subtype: str = "PCM_16") -> None:
    """Write a mono WAV atomically (16-bit PCM by default)."""
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    with atomic_write(path, "wb") as f:
        sf.write(f, data, sample_rate, subtype=subtype, format="WAV")
