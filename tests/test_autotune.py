"""precision: auto and batch_size: auto: measured fidelity decides the precision, free memory the batch."""

import numpy as np
import pytest
import torch

from onss_tui.engine.auto import choose_precision
from onss_tui.engine.fastgen import auto_batch, voice_bytes
from onss_tui.engine.fidelity import KL_BAR, compare, fidelity
from onss_tui.model.encoder import LAYERS, dilation

DILATIONS = [dilation(i) for i in range(LAYERS)]


def test_voice_memory_matches_the_spec():
    # spec: about 6.3 MB of state per voice in bf16 (ring buffers of 2d x 512 for 30 layers)
    assert voice_bytes(DILATIONS, torch.bfloat16, 0) - 64 * 1024 == 6138 * 512 * 2
    assert voice_bytes(DILATIONS, torch.float32, 64000) == 6138 * 512 * 4 + 64000 + 64 * 1024


def test_auto_batch_fits_the_free_memory_in_powers_of_two():
    per = voice_bytes(DILATIONS, torch.bfloat16)
    assert auto_batch(80 * 2**30, per) == 8192  # an idle H100: the cap
    assert auto_batch(30 * 2**30, per) == 4096  # (30 - 2) GiB / 6.4 MB = 4,665 voices
    assert auto_batch(3 * 2**30, per) == 128
    assert auto_batch(1 * 2**30, per) == 1  # less than the reserve: one voice, and OOM halving does the rest
    for free in (5 * 2**30, 17 * 2**30, 50 * 2**30):
        b = auto_batch(free, per)
        assert b & (b - 1) == 0 and (2 << 30) + b * per <= free < (2 << 30) + 2 * b * per


def test_compare_is_zero_for_identical_and_grows_with_distance():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 50, 256))
    ref = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    same = compare(ref, ref, "fp32")
    assert same.kl_mean == 0 and same.top1 == 1 and same.meets_bar and same.steps == 100
    noisy = logits + rng.normal(0, 0.5, logits.shape)
    other = noisy - np.log(np.exp(noisy).sum(-1, keepdims=True))
    far = compare(ref, other, "bf16")
    assert far.kl_mean > KL_BAR and not far.meets_bar and 0 < far.top1 < 1 and far.kl_max >= far.kl_mean


@pytest.mark.slow
def test_choose_precision_on_the_golden_weights(golden_model, reference):
    """bf16 and tf32 measured against fp32 on a golden clip through the incremental decoder; the
    choice is the first that meets the bar (on the CPU tf32 is fp32, so it always does)."""
    clip = reference["audio"][:1, :512].astype(np.float32)
    precision, measured = choose_precision(golden_model, clip, samples=256)
    bf16, *rest = measured
    assert bf16.precision == "bf16" and bf16.steps == 256 and 0.9 < bf16.top1 <= 1
    if bf16.meets_bar:
        assert precision == "bf16" and rest == []
    else:
        assert precision == "tf32" and rest[0].kl_mean == 0.0 and rest[0].top1 == 1.0
    again = fidelity(golden_model, golden_model.with_precision("bf16"), clip[:, :256], golden_model.encode(clip))
    assert again.kl_mean == pytest.approx(bf16.kl_mean, rel=1e-6)
