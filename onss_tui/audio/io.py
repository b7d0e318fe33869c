"""Reading and writing audio: soundfile for every container it knows, soxr for resampling.

Everything the pipeline handles is 16 kHz mono float32 in [-1, 1]. Errors are
:class:`AudioError` with a message that names the file and says what to do.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from onss_tui.atomic import atomic_write
from onss_tui.vocab import SAMPLE_RATE  # re-exported (__all__)

AUDIO_SUFFIXES = (".wav", ".aif", ".aiff", ".flac", ".mp3", ".ogg")
# Formats people export notes in that are not read here: named so the fix is "convert it", not "missing".
UNREAD_SUFFIXES = (".m4a", ".aac", ".alac", ".wma", ".opus", ".mp4", ".m4v", ".webm", ".mka", ".ape", ".wv",
                   ".amr", ".ac3", ".caf")
MIN_RATE, MAX_RATE = 4_000, 768_000  # sample rates outside these are a damaged or mislabelled header
SILENT_PEAK = 1e-4  # below -80 dBFS is silence

__all__ = ["AudioError", "AudioInfo", "SAMPLE_RATE", "AUDIO_SUFFIXES", "UNREAD_SUFFIXES", "MIN_RATE", "MAX_RATE",
           "SILENT_PEAK", "probe", "load", "fit_length", "save_wav"]


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
    declared_frames: int | None = None  # what a WAV or AIFF header claims (None: not known)

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0

    @property
    def declared_seconds(self) -> float:
        frames = self.frames if self.declared_frames is None else self.declared_frames
        return frames / self.samplerate if self.samplerate else 0.0

    @property
    def missing_frames(self) -> int:
        """Frames the header claims that the file does not hold (a truncated file), else 0."""
        return max(0, self.declared_frames - self.frames) if self.declared_frames is not None else 0


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def _refuse_special(path: Path) -> None:
    """Refuse FIFOs, sockets and devices (through symbolic links too) before anything opens them:
    opening a FIFO blocks until something writes to it, a device never ends or is empty."""
    try:
        mode = os.stat(path).st_mode  # follows symbolic links
    except (OSError, ValueError):
        return  # missing, broken link, loop: the open fails and _open_error explains it
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = next((name for test, name in _SPECIAL if test(mode)), "a special file")
    if path.is_symlink():
        kind += f", through a symbolic link to {os.path.realpath(path)}"
    raise AudioError(f"{path}: not a regular file ({kind}); notes must be plain audio files. "
                     "Remove it or replace it with the note.")


def _check_rate(path: Path, rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{path}: the header says a sample rate of {rate:,} Hz, outside {MIN_RATE:,}-{MAX_RATE:,} Hz "
                         "(a damaged or mislabelled file). Export it again at 16 kHz or 44.1/48 kHz.")


_PCM_TAGS = (1, 3, 6, 7, 0xFFFE)  # WAVE_FORMAT_PCM, IEEE_FLOAT, ALAW, MULAW, EXTENSIBLE: one block a frame


def _declared_frames(path: Path) -> int | None:
    """The frame count a WAV's data chunk or an AIFF's COMM chunk claims, read from the header
    (libsndfile quietly shortens it to what a truncated file holds); None when not known."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                order = "<"
            elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                order = ">"
            else:
                return None  # RF64, FLAC, MP3, Ogg: not checked here
            block_align = 0
            for _ in range(1000):
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
                start = f.tell()
                if order == ">" and cid == b"COMM":
                    return int(struct.unpack(">I", f.read(6)[2:6])[0])
                if order == "<" and cid == b"fmt ":
                    tag, _, _, _, align = struct.unpack("<HHIIH", f.read(14))
                    block_align = align if tag in _PCM_TAGS else 0  # compressed: blocks of many frames
                elif order == "<" and cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):  # unknown length (a streaming writer)
                        return None
                    return int(size // block_align)
                f.seek(start + size + (size & 1))
    except (OSError, struct.error):
        return None
    return None


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
    _refuse_special(p)
    try:
        info = sf.info(str(p))
    except Exception as exc:  # soundfile raises several types for bad files
        raise _open_error(p, exc) from exc
    _check_rate(p, int(info.samplerate))
    return AudioInfo(p, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype,
                     _declared_frames(p))


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file as mono float32 at ``sample_rate`` (channels averaged, soxr high quality)."""
    p = Path(path)
    _refuse_special(p)
    try:
        with sf.SoundFile(str(p)) as f:
            rate = int(f.samplerate)
            _check_rate(p, rate)
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:
        raise _open_error(p, exc) from exc
    if data.shape[0] == 0:
        raise AudioError(f"{p}: contains no samples. Export the sound again.")
    if not np.isfinite(data).all():
        raise AudioError(f"{p}: contains NaN or infinite samples. Re-export it as 16- or 24-bit PCM.")
    mono = data.mean(axis=1, dtype=np.float32)
    loudest = float(np.abs(data).max())
    if data.shape[1] > 1 and float(np.abs(mono).max()) < SILENT_PEAK <= loudest:
        raise AudioError(f"{p}: the channels cancel when mixed to mono (they peak at {20 * np.log10(loudest):.0f} "
                         "dBFS, the mix is silent: they are out of phase). Use one channel, or fix the phase, "
                         "and export it again.")
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
