import numpy as np
import torch

from onss_tui.model.mulaw import INV_MU_LAW_TABLE, inv_mu_law, mu_law, mu_law_torch


def test_mu_law_matches_magenta_on_the_ramp(reference):
    x, expected = reference["mu_law_in"], reference["mu_law_out"]
    got = mu_law(x)
    below_one = x < 1.0
    assert np.array_equal(got[below_one], expected[below_one])
    # Magenta returns q = 128 (class 256, out of range) for x == 1.0; the port clamps it to 127.
    assert expected[~below_one].tolist() == [128] and got[~below_one].tolist() == [127]


def test_mu_law_of_the_golden_audio_is_the_quantized_input(reference):
    assert np.array_equal(mu_law(reference["audio"]), reference["quantized_input"])
    t = mu_law_torch(torch.from_numpy(reference["audio"])).numpy()
    assert np.array_equal(t, reference["quantized_input"])


def test_torch_and_numpy_mu_law_agree():
    x = np.random.default_rng(3).uniform(-1, 1, 200_000).astype(np.float32)
    x[:5] = [-1.0, 0.0, -1e-9, 1e-9, 1.0]
    assert np.array_equal(mu_law(x), mu_law_torch(torch.from_numpy(x)).numpy())
    assert mu_law(np.float32(-1e-9)) == -1 and mu_law(np.float32(0)) == 0


def test_inverse_mu_law_table_is_exact(reference):
    bins = reference["inv_mu_law_bins"]
    assert np.array_equal(inv_mu_law(bins), reference["inv_mu_law_out"])
    assert INV_MU_LAW_TABLE[128] == 0.0  # q == 0 decodes to exactly zero
    assert INV_MU_LAW_TABLE.dtype == np.float32 and INV_MU_LAW_TABLE.shape == (256,)


def test_round_trip_returns_every_level():
    assert np.array_equal(mu_law(INV_MU_LAW_TABLE), np.arange(-128, 128))
    assert np.abs(INV_MU_LAW_TABLE).max() < 0.98
