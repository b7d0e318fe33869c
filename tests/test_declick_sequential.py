"""De-click as the original step 05 does it (spec §3.5 step 2): clicks found once, fixed one after
another, so in a run of back-to-back clicks each fix sees the one before it.

The reference is the original's loop, sample by sample in float32 (librosa loads float32 audio)."""

import numpy as np
import pytest

from onss_tui.pipeline.clean import declick


def original_declick(audio: np.ndarray) -> np.ndarray:
    """05_clean_files.py, written out in plain Python loops (float32 samples, float32 arithmetic)."""
    audio = np.array(audio, dtype=np.float32)
    n = len(audio)
    d_thresh = [i for i in range(n - 1) if abs(float(audio[i + 1] - audio[i])) > 1.0]  # found once
    clicks = [c for i, c in enumerate(d_thresh[:-1]) if d_thresh[i] + 1 == d_thresh[i + 1]]
    for click in clicks:  # one after another: audio[click] may be a sample fixed just before
        audio[click + 1] = (audio[click] + audio[click + 2]) / np.float32(2.0)
    return audio


def with_click_runs(seed: int, n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(0, 0.15, n), -0.95, 0.95).astype(np.float32)
    starts = list(rng.choice(np.arange(4, n - 20), size=25, replace=False)) + [0, n - 9]
    for s in starts:  # runs of samples alternating by more than 1.0: back-to-back clicks
        length = int(rng.integers(2, 9))
        amp = rng.uniform(0.55, 0.98, length)
        sign = 1 if rng.random() < 0.5 else -1
        for k in range(length):
            if s + k < n:
                x[s + k] = sign * amp[k] * (-1) ** k
    for s in rng.choice(np.arange(2, n - 2), size=10, replace=False):  # lone one-sample spikes
        x[s] = 0.97 if x[s - 1] < -0.05 else -0.97
    return x


@pytest.mark.parametrize("seed", range(6))
def test_declick_matches_the_originals_sequential_fix(seed):
    x = with_click_runs(seed)
    want = original_declick(x)
    got = declick(x)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert np.array_equal(x, with_click_runs(seed))  # the input is left alone
    # the runs matter: fixing every click from the input's samples (vectorised) gives other values
    jumps = np.nonzero(np.abs(np.diff(x)) > 1.0)[0]
    clicks = jumps[:-1][np.diff(jumps) == 1]
    vectorised = x.copy()
    vectorised[clicks + 1] = (x[clicks] + x[clicks + 2]) / 2
    assert not np.array_equal(vectorised, want)


def test_a_run_of_clicks_by_hand():
    x = np.array([0.0, 0.9, -0.9, 0.9, -0.9, 0.9, 0.0], np.float32)
    # steps 0.9, -1.8, 1.8, -1.8, 1.8, -0.9: jumps at 1..4, clicks 1, 2, 3. One after another:
    # x2 = (x1 + x3)/2 = 0.9, x3 = (x2 + x4)/2 = (0.9 - 0.9)/2 = 0, x4 = (x3 + x5)/2 = 0.45
    want = np.array([0.0, 0.9, 0.9, 0.0, 0.45, 0.9, 0.0], np.float32)
    np.testing.assert_allclose(declick(x), want, atol=1e-7)  # from the input's samples: x3 -0.9, x4 0.9
    assert declick(x).tobytes() == original_declick(x).tobytes()


def test_all_clicks_and_no_clicks():
    rng = np.random.default_rng(7)
    alternating = (np.where(np.arange(64000) % 2, 1, -1) * rng.uniform(0.6, 0.99, 64000)).astype(np.float32)
    assert declick(alternating).tobytes() == original_declick(alternating).tobytes()
    quiet = rng.normal(0, 0.1, 64000).astype(np.float32)
    assert declick(quiet).tobytes() == quiet.tobytes()
    for short in (np.zeros(0, np.float32), np.zeros(1, np.float32), np.array([0.9, -0.9], np.float32)):
        assert declick(short).tobytes() == original_declick(short).tobytes()
