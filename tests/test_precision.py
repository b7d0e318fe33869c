"""Reduced precisions stay close to fp32 (per-step mean KL divergence), on CPU here, CUDA where present."""

import numpy as np
import pytest
import torch

from onss_tui.model import NSynth

N = 2048


def mean_kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    p = np.exp(p_log.astype(np.float64))
    return float((p * (p_log.astype(np.float64) - q_log.astype(np.float64))).sum(-1).mean())


@pytest.fixture(scope="module")
def fp32_logp(golden_model, reference):
    return golden_model.log_probs(reference["audio"][:, :N], reference["encoding"], "parallel")


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_parallel_precision_is_close_to_fp32(golden_variables, reference, fp32_logp, precision):
    m = NSynth.from_tf_variables(golden_variables, precision=precision)
    lp = m.log_probs(reference["audio"][:, :N], reference["encoding"], "parallel")
    assert lp.dtype == np.float32
    kl = mean_kl(fp32_logp, lp)
    if precision == "tf32":  # no TF32 on a CPU: identical
        assert kl < 1e-9
    else:
        assert 0 < kl < 0.05


def test_bf16_incremental_matches_bf16_parallel_shape_and_fp32_closely(golden_variables, reference, fp32_logp):
    m = NSynth.from_tf_variables(golden_variables, precision="bf16")
    lp = m.log_probs(reference["audio"][:, :512], reference["encoding"], "incremental")
    assert m.packed().dil_w[0].dtype == torch.bfloat16 and m.packed().fresh_state(1).buffers[0].dtype == torch.bfloat16
    assert mean_kl(fp32_logp[:, :512], lp) < 0.05


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        NSynth(precision="fp8")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp32_parity(golden_variables, reference):
    m = NSynth.from_tf_variables(golden_variables, device="cuda", precision="fp32")
    enc = m.encode(reference["audio"])
    assert np.abs(enc - reference["encoding"]).max() <= 1e-3 * np.abs(reference["encoding"]).max()
    steps = reference["steps"]
    for mode in ("parallel", "incremental"):
        lp = m.log_probs(reference["audio"], reference["encoding"], mode)[:, steps]
        floored = np.log(np.exp(lp.astype(np.float64)) + 1e-30)
        assert np.abs(floored - reference["logp_fast"]).max() < 1e-3, mode
        assert np.abs(floored - reference["logp_parallel"]).max() < 1e-3, mode
