"""The clean stage: de-click, normalisation, and the MP3 / low-pass colour, measured."""

import numpy as np

from onss_tui.pipeline.clean import clean_sound, declick, lowpass, mp3_round_trip, normalize


def band_db(x: np.ndarray, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    ref = spec[(f > 1000) & (f < 4000)].mean()
    return float(10 * np.log10(spec[(f >= hz - 50) & (f < hz + 50)].mean() / ref))


NOISE = np.random.default_rng(0).normal(0, 0.1, 64000).astype(np.float32)


def test_declick_removes_one_sample_spikes_only():
    x = np.zeros(100, np.float32)
    x[40] = 0.9
    x[41] = -0.9  # spike: jumps of 1.8 up and down
    x[42] = 0.8
    y = declick(x)
    assert y[42] == x[42] and abs(y[41] - (x[40] + x[42]) / 2) < 1e-7
    step = np.concatenate([np.full(50, -0.6), np.full(50, 0.6)]).astype(np.float32)  # one jump of 1.2: a step
    assert np.array_equal(declick(step), step)


def test_normalise_to_minus_12_dbfs_like_sox():
    x = (NOISE * 20000).astype(np.int16)
    y = normalize(x, -12.0)
    assert round(np.abs(y).max()) == 8231  # sox --norm=-12 gives a peak of 8231 of 32768


def test_mp3_round_trip_is_lames_default_colour():
    y = mp3_round_trip(NOISE)
    assert len(y) == 65664  # libsndfile keeps the encoder/decoder padding
    assert band_db(y[:64000], 5000) > -1.5 and band_db(y[:64000], 6000) < -30  # the ~5.8 kHz band limit
    impulse = np.zeros(64000, np.float32)
    impulse[20000] = 0.9
    assert int(np.argmax(np.abs(mp3_round_trip(impulse)))) - 20000 == 1105  # LAME 576 + decoder 529


def test_lowpass_matches_the_band_limit_without_coding():
    y = lowpass(NOISE)
    assert len(y) == len(NOISE)
    assert band_db(y, 5000) > -1 and band_db(y, 6000) < -30


def test_clean_sound_modes():
    x = (np.sin(2 * np.pi * 440 * np.arange(64000) / 16000) * 30000).astype(np.int16)
    for mode, length in (("none", 64000), ("lowpass", 64000), ("mp3", 65664)):
        y = clean_sound(x, mode, -12.0)
        assert y.dtype == np.int16 and len(y) == length
        assert 7900 < np.abs(y).max() < 8600, mode  # about -12 dBFS (the codec overshoots a little)
