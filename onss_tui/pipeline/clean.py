"""Stage clean: de-click, peak-normalise, and the original's MP3 colour (spec §3.5), in linear time.

Per sound, as the original step 05 did, with its bugs fixed:
1. de-click: where two consecutive sample steps both exceed 1.0 (a one-sample spike), the spike
   sample becomes the mean of its neighbours, fixed one after another as the original did;
2. float -> int16 with clipping (the original wrapped +1.0 to -32768);
3. peak-normalise to ``normalize_dbfs`` (-12 dBFS: peak 8231 of 32768, as ``sox --norm=-12``);
4. ``mp3``: an MPEG-2 Layer III round trip at 16 kHz mono, 24 kbps constant bit rate, through
   libsndfile (soundfile); this is LAME's default for such input and brings its ~5.8 kHz band limit
   and coding colour. ``lowpass``: the band limit alone (windowed-sinc FIR at 5.85 kHz, zero
   phase). ``none``: skip.
Each shard is converted once (the original re-converted every MP3 of every batch: O(N^2)).
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from onss_tui.atomic import atomic_save_npy
from onss_tui.signals import deferred

LOWPASS_HZ = 5850.0
SAMPLE_RATE = 16000

__all__ = ["declick", "normalize", "mp3_round_trip", "mp3_unavailable", "lowpass", "clean_sound", "clean_shard"]


def declick(audio: np.ndarray) -> np.ndarray:
    """Replace one-sample spikes (two successive jumps above half full scale) by the neighbours' mean.

    As the original (spec §3.5 step 2): the clicks are found once, on the input, then fixed one after
    another in ascending order, ``x[c+1] = (x[c] + x[c+2]) / 2``, so a fixed sample is the left
    neighbour of the next click in a run of back-to-back clicks. The right neighbour ``x[c+2]`` is still
    the input's there (only click c+1, later, changes it). Every click whose left neighbour was not
    changed (c-1 no click: nearly all) is fixed at once; only those in runs go through a Python loop.
    """
    src = np.asarray(audio, dtype=np.float32)
    x = src.copy()
    jumps = np.nonzero(np.abs(np.diff(src)) > 1.0)[0]
    if jumps.size > 1:
        clicks = jumps[:-1][np.diff(jumps) == 1]
        x[clicks + 1] = (src[clicks] + src[clicks + 2]) / np.float32(2)
        if clicks.size > 1:
            for c in clicks[1:][np.diff(clicks) == 1].tolist():  # ascending: x[c] is already final
                x[c + 1] = (x[c] + src[c + 2]) / np.float32(2)
    return x


def normalize(audio_int16: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale so the peak is ``dbfs`` relative to 32768 (float result, not yet rounded)."""
    x = audio_int16.astype(np.float64)
    peak = np.abs(x).max()
    if peak == 0:
        return x
    return x * (32768.0 * 10 ** (dbfs / 20) / peak)


def mp3_round_trip(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] at 16 kHz -> MPEG-2 Layer III 24 kbps CBR -> float32 (decoder delay kept)."""
    buf = io.BytesIO()
    with deferred():  # libsndfile calls back into Python here: a ctrl+c must not land inside
        sf.write(buf, np.asarray(audio, np.float32), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=0.9, bitrate_mode="CONSTANT")
        buf.seek(0)
        out, _ = sf.read(buf, dtype="float32")
    return out


def mp3_unavailable() -> str | None:
    """Why this soundfile and libsndfile cannot make :func:`mp3_round_trip`, or None where they can.

    libsndfile writes MP3 from 1.1.0 on, where it was built with LAME and mpg123 (soundfile's wheels
    bundle such a build); soundfile passes the encoder settings used here from 0.13.0 on. Both are
    checked by what they do: the formats libsndfile lists, then a round trip of a few samples in memory.
    """
    try:
        has_mp3 = "MP3" in sf.available_formats()
    except Exception as exc:  # (a libsndfile that cannot list its formats is no better)
        return f"libsndfile {_libsndfile_version()} cannot list its formats ({exc})"
    if not has_mp3:
        return f"libsndfile {_libsndfile_version()} has no MP3 format"
    try:
        mp3_round_trip(np.zeros(SAMPLE_RATE // 100, np.float32))
    except Exception as exc:  # TypeError: a soundfile before 0.13; soundfile.LibsndfileError; ...
        return f"a test MP3 write failed ({type(exc).__name__}: {exc})"
    return None


def _libsndfile_version() -> str:
    return f"{getattr(sf, '__libsndfile_version__', '(version unknown)')} (soundfile {sf.__version__})"


def _lowpass_kernel(cutoff: float = LOWPASS_HZ, taps: int = 255) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / SAMPLE_RATE * n) * np.blackman(taps)
    return h / h.sum()


def lowpass(audio: np.ndarray) -> np.ndarray:
    return np.convolve(np.asarray(audio, np.float64), _lowpass_kernel(), mode="same").astype(np.float32)


def clean_sound(audio_int16: np.ndarray, mode: str, dbfs: float) -> np.ndarray:
    """One generated sound (int16) -> cleaned int16 (the MP3 mode makes it a little longer)."""
    x = declick(audio_int16.astype(np.float32) / 32768.0)
    x16 = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    y = normalize(x16, dbfs) / 32768.0
    if mode == "mp3":
        y = mp3_round_trip(y)
    elif mode == "lowpass":
        y = lowpass(y)
    return np.clip(np.round(np.asarray(y, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def clean_shard(src, dst, mode: str, dbfs: float) -> None:
    audio = np.load(src)  # (the stage checks it against its done marker first)
    cleaned = [clean_sound(a, mode, dbfs) for a in audio]
    length = max(len(c) for c in cleaned)
    out = np.zeros((len(cleaned), length), dtype=np.int16)
    for i, c in enumerate(cleaned):
        out[i, : len(c)] = c
    atomic_save_npy(dst, out)
