"""Audio input and output: any format soundfile reads, resampled with soxr, mono float32."""

from onss_tui.audio.io import AudioError, AudioInfo, fit_length, load, probe, save_wav

__all__ = ["AudioError", "AudioInfo", "fit_length", "load", "probe", "save_wav"]
