"""Parity with Magenta's own NSynth graph (../shared/golden/nsynth_reference.npz).

The reference stores log-probabilities as log(p + 1e-30): classes with p below ~1e-30 read about
-69.08 there. The comparison applies the same floor to our exact log-softmax; nothing else is
transformed.
"""

import numpy as np
import pytest

from onss_tui.model import NSynth

# Absolute bound on every comparison below. Measured on a 2-core x86 CPU (2026-12-02): encoder 3.4e-5
# (its values reach 55), log-probs 2.7e-5 to 3.7e-5 against the two references, incremental against
# our own parallel decoder 4.0e-5; the two references differ from each other by 3.8e-5. 1e-4 leaves
# room for other CPUs' summation orders (10x tighter than the golden README's "about 1e-3").
TOL = 1e-4
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
    assert np.abs(enc - want).max() <= TOL


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
