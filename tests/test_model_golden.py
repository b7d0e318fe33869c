"""Parity with Magenta's own NSynth graph (../shared/golden/nsynth_reference.npz).

The reference stores log-probabilities as log(p + 1e-30): classes with p below ~1e-30 read about
-69.08 there. The comparison applies the same floor to our exact log-softmax; nothing else is
transformed.
"""

import numpy as np
import pytest

from onss_tui.model import NSynth

TOL = 1e-3
pytestmark = pytest.mark.xdist_group("golden")  # under pytest-xdist: one worker computes the module's fixtures


def floored(logp: np.ndarray) -> np.ndarray:
    return np.log(np.exp(logp.astype(np.float64)) + 1e-30)


def test_variable_names_and_shapes_match_the_checkpoint(golden_spec):
    shapes = NSynth.variable_shapes()
    assert shapes == {k: tuple(v) for k, v in golden_spec["variables"].items()}
    assert len(shapes) == 374
    assert sum(int(np.prod(s)) for s in shapes.values()) == 61_804_048


def test_reference_floor_is_what_we_think(reference):
    # the smallest stored value is log(1e-30) plus a sliver: the floor the comparison reproduces
    assert -69.08 < reference["logp_parallel"].min() < -69.0


def test_encoder_matches_reference(golden_model, reference):
    enc = golden_model.encode(reference["audio"])
    want = reference["encoding"]
    assert enc.shape == want.shape == (2, 16, 16) and enc.dtype == np.float32
    scale = np.abs(want).max()
    assert np.abs(enc - want).max() <= TOL * scale


@pytest.fixture(scope="module")
def parallel_logp(golden_model, reference):
    return golden_model.log_probs(reference["audio"], reference["encoding"], mode="parallel")


def test_parallel_decoder_matches_both_references(parallel_logp, reference):
    lp = parallel_logp[:, reference["steps"]]
    assert parallel_logp.shape == (2, 8192, 256) and parallel_logp.dtype == np.float32
    assert np.abs(floored(lp) - reference["logp_parallel"]).max() < TOL
    assert np.abs(floored(lp) - reference["logp_fast"]).max() < TOL
    # and the exact log-softmax is normalised
    assert np.allclose(np.exp(parallel_logp[:, ::97].astype(np.float64)).sum(-1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_incremental_generator_matches_both_references(golden_model, reference, parallel_logp):
    """The one-step generator with ring buffers, fed the true previous sample, all 8192 steps."""
    lp = golden_model.log_probs(reference["audio"], reference["encoding"], mode="incremental")
    assert lp.shape == (2, 8192, 256)
    at = floored(lp[:, reference["steps"]])
    assert np.abs(at - reference["logp_fast"]).max() < TOL
    assert np.abs(at - reference["logp_parallel"]).max() < TOL
    # incremental and parallel forms of our own decoder agree everywhere, not only at stored steps
    assert np.abs(floored(lp) - floored(parallel_logp)).max() < TOL
