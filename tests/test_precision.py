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
    n = 512
    m = NSynth.from_tf_variables(golden_variables, precision="bf16")
    lp = m.log_probs(reference["audio"][:, :n], reference["encoding"], "incremental")
    assert m.packed().dil_w[0].dtype == torch.bfloat16 and m.packed().fresh_state(1).buffers[0].dtype == torch.bfloat16
    assert mean_kl(fp32_logp[:, :n], lp) < 0.05


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


def test_bf16_on_a_cpu_is_autocasts_arithmetic():
    """On a CPU, bf16 convolutions (parallel form, encoder) and the generator's bf16 products are
    taken in float32 on operands rounded to bfloat16 (fast on CPUs without bfloat16 instructions).
    That is autocast's arithmetic but for the order of the sums: a convolution's result is
    autocast's to within one bfloat16 rounding (near zero: float32 summation order), and the
    generator's products are exact."""
    from torch.nn import functional as F

    from onss_tui.engine.bf16cpu import Bf16ConvOnCpu

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 512, 700, generator=gen)
    w = torch.randn(1024, 512, 3, generator=gen) / 40
    b = torch.randn(1024, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = F.conv1d(x, w, b, dilation=8)
    with Bf16ConvOnCpu():
        got = F.conv1d(x, w, b, dilation=8)
    assert got.dtype == want.dtype == torch.bfloat16 and got.shape == want.shape
    ulp = 2.0 ** (torch.floor(torch.log2(want.float().abs())) - 7)  # one bfloat16 step at that size
    # ... or, where the sum cancels to near zero, what the order of 1536 float32 additions can move
    assert ((got.float() - want.float()).abs() <= ulp.clamp(min=2.0**-13)).all()
    assert (got == want).float().mean() > 0.99
    plain = F.conv1d(x, w, b, dilation=8)  # and the emulation does round: not the float32 result
    assert (got.float() != plain).float().mean() > 0.9

    m = NSynth(precision="bf16")
    p = m.packed()
    step = p.layer_step  # PyTorch ops
    assert p.dil_w[0].dtype == torch.bfloat16 and step.mm_dtype == torch.float32
    assert torch.equal(step.dil_mm[0], p.dil_w[0].float()) and torch.equal(step.rs_mm[-1], p.rs_w[-1].float())
    taps = torch.randn(3, 1536, generator=gen).bfloat16()
    exact = taps.double() @ p.dil_w[0].double()  # products of bfloat16 values, summed in float64
    assert ((taps.float() @ step.dil_mm[0]).double() - exact).abs().max() < 1e-5 * exact.abs().max()
