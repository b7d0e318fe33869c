"""Incremental generation: sampling rule, determinism, batch independence and exact resume."""

import io

import numpy as np
import pytest
import torch

from onss_tui.engine.fastgen import Generation, PackedDecoder
from onss_tui.model.decoder import Decoder
from onss_tui.model.mulaw import INV_MU_LAW_TABLE
from onss_tui.model.rng import mix32, sound_keys, uniform

FRAMES = 2  # 1024 samples


@pytest.fixture(scope="module")
def small_decoder() -> Decoder:
    """A 4-layer decoder (dilations 1, 2, 4, 8) with weights large enough to give peaked outputs."""
    torch.manual_seed(0)
    dec = Decoder(layers=4).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(3.0)
    return dec


@pytest.fixture(scope="module")
def packed(small_decoder) -> PackedDecoder:
    return PackedDecoder(small_decoder)


def encodings(n: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 3, (n, FRAMES, 16)).astype(np.float32))


def run(packed, enc, ids, seed=0, chunk=10_000) -> torch.Tensor:
    gen = Generation(packed, enc, sound_keys(seed, torch.as_tensor(ids)))
    while not gen.done:
        gen.advance(chunk)
    return gen.codes.clone()


def test_same_seed_same_audio_other_seed_other_audio(packed):
    enc = encodings(2)
    a = run(packed, enc, [0, 1], seed=7)
    assert torch.equal(a, run(packed, enc, [0, 1], seed=7))
    assert (a != run(packed, enc, [0, 1], seed=8)).float().mean() > 0.5


def test_a_sound_does_not_depend_on_its_batch(packed):
    enc = encodings(3)
    together = run(packed, enc, [10, 11, 12])
    alone = run(packed, enc[1:2], [11])
    assert torch.equal(together[1], alone[0])
    # the same encoding under another sound id is another draw
    assert not torch.equal(together[1], run(packed, enc[1:2], [99])[0])


def test_chunking_does_not_change_the_result(packed):
    enc = encodings(2)
    whole = run(packed, enc, [0, 1], chunk=10_000)
    assert torch.equal(whole, run(packed, enc, [0, 1], chunk=37))


def test_resume_from_saved_state_is_bit_exact(packed):
    enc = encodings(2)
    ids = torch.tensor([5, 6])
    whole = run(packed, enc, ids, seed=3)
    first = Generation(packed, enc, sound_keys(3, ids))
    first.advance(700)  # stop mid-frame
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # through bytes, as a checkpoint on disk would be
    del first
    buf.seek(0)
    resumed = Generation(packed, enc, sound_keys(3, ids))
    resumed.load_state_dict(torch.load(buf))
    assert resumed.t == 700
    while not resumed.done:
        resumed.advance(100)
    assert torch.equal(resumed.codes, whole)


def test_state_of_other_sounds_is_refused(packed):
    enc = encodings(2)
    gen = Generation(packed, enc, sound_keys(0, torch.tensor([0, 1])))
    gen.advance(3)
    other = Generation(packed, enc, sound_keys(0, torch.tensor([0, 2])))
    with pytest.raises(ValueError, match="other sounds"):
        other.load_state_dict(gen.state_dict())


def test_samples_follow_the_model_and_the_inverse_cdf_rule(small_decoder, packed):
    """Re-score the generated audio with the parallel decoder: each sample must be the inverse-CDF
    class of that step's uniform under the model's distribution given the generated past."""
    enc = encodings(2)
    ids = torch.tensor([3, 4])
    codes = run(packed, enc, ids, seed=11).long()  # [B, T]
    x_scaled = (codes.float() - 128) / 128
    with torch.no_grad():
        cdf = torch.cumsum(torch.softmax(small_decoder(x_scaled, enc), -1), -1)  # [B, T, 256]
    keys = sound_keys(11, ids)
    u = torch.stack([uniform(keys, t) for t in range(codes.shape[1])], 1)  # [B, T]
    k = torch.searchsorted(cdf, u[..., None]).clamp(max=255)[..., 0]
    agree = (k == codes).float().mean().item()
    assert agree > 0.999, agree
    # the model is not trivial: it used many classes
    assert len(torch.unique(codes)) > 20


def test_generate_api_output(golden_model):
    enc = np.random.default_rng(0).normal(0, 5, (2, 1, 16)).astype(np.float32)
    seen = []
    out = golden_model.generate(enc, seed=1, progress=lambda t, total: seen.append((t, total)), chunk=128)
    assert out.shape == (2, 512) and out.dtype == np.float32
    assert np.isin(out, INV_MU_LAW_TABLE).all()
    assert seen[-1] == (512, 512) and len(seen) == 4
    with pytest.raises(ValueError, match="one id per encoding"):
        golden_model.generation(enc, sound_ids=[1, 2, 3])


# ---------------------------------------------------------------------------------------------
# the counter-based uniforms


def np_mix32(x: np.ndarray) -> np.ndarray:
    """An independent uint32 twin of rng.mix32 (numpy wraps uint32 products)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def test_mix32_is_the_32_bit_hash_and_a_bijection():
    x = np.random.default_rng(0).integers(0, 2**32, 1_000_000, dtype=np.uint64)
    x[:3] = [0, 1, 2**32 - 1]
    got = mix32(torch.from_numpy(x.astype(np.int64))).numpy()
    assert np.array_equal(got.astype(np.uint64), np_mix32(x).astype(np.uint64))
    assert got.min() >= 0 and got.max() < 2**32
    assert len(np.unique(got)) == len(np.unique(x))


def test_uniforms_are_uniform_and_independent():
    keys = sound_keys(0, torch.arange(512))
    u = torch.stack([uniform(keys, t) for t in range(512)]).numpy().astype(np.float64)  # [steps, sounds]
    assert u.min() >= 0.0 and u.max() < 1.0
    hist, _ = np.histogram(u, bins=64, range=(0, 1))
    expected = u.size / 64
    chi2 = ((hist - expected) ** 2 / expected).sum()
    assert chi2 < 120  # 63 degrees of freedom; p < 1e-5 beyond this
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.01  # step to step
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01  # sound to sound


def test_uniform_depends_only_on_seed_id_and_step():
    ids = torch.tensor([4, 9, 2**40 + 4])
    batch = uniform(sound_keys(5, ids), 1234)
    for i, sid in enumerate(ids.tolist()):
        assert uniform(sound_keys(5, torch.tensor([sid])), torch.tensor(1234))[0] == batch[i]
    assert batch[0] != batch[2]  # high bits of the id matter
    assert not torch.equal(batch, uniform(sound_keys(6, ids), 1234))
    assert uniform(sound_keys(5, ids), 2**33 + 1234)[0] != batch[0]
