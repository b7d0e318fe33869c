"""The device-resident step (for CUDA graphs) gives the host-counter generator's samples bit for bit."""

import numpy as np
import pytest
import torch

from onss_tui.engine.fastgen import Generation, PackedDecoder
from onss_tui.engine.graphgen import DeviceGeneration
from onss_tui.model.decoder import Decoder
from onss_tui.model.rng import sound_keys


def decoder(layers=4, seed=0) -> Decoder:
    torch.manual_seed(seed)
    dec = Decoder(layers=layers).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(3.0)
    return dec


def enc(n, frames=2, seed=1):
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 3, (n, frames, 16)).astype(np.float32))


def generate(cls, packed, e, ids, seed=5, pattern=(10_000,), **kw):
    gen = cls(packed, e, sound_keys(seed, torch.as_tensor(ids)), **kw)
    i = 0
    while not gen.done:
        gen.advance(pattern[i % len(pattern)])
        i += 1
    return gen.codes.clone()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_device_step_equals_the_host_step(dtype):
    packed = PackedDecoder(decoder(layers=6), compute_dtype=dtype)  # dilations up to 32
    e, ids = enc(3, frames=1), [7, 8, 9]
    want = generate(Generation, packed, e, ids)
    got = generate(DeviceGeneration, packed, e, ids, chunk=64)
    assert torch.equal(want, got)
    # odd chunkings: single steps, partial chunks, chunks that start off the chunk grid
    assert torch.equal(want, generate(DeviceGeneration, packed, e, ids, pattern=(1, 63, 200, 5), chunk=32))
    assert len(torch.unique(want)) > 20  # not a trivial model


def test_nsynth_generation_picks_the_device_step_on_request(golden_model):
    e = np.random.default_rng(0).normal(0, 5, (2, 1, 16)).astype(np.float32)
    host = golden_model.generation(e, seed=3)
    assert type(host) is Generation  # the CPU default
    dev = golden_model.generation(e, seed=3, graphs=True)
    assert isinstance(dev, DeviceGeneration) and not dev.graphs  # device-style steps, no graphs on the CPU
    host.advance(40)
    dev.advance(40)
    assert torch.equal(host.codes[:, :40], dev.codes[:, :40])


def test_device_generation_resumes_bit_exactly():
    packed = PackedDecoder(decoder())
    e, ids = enc(2), [1, 2]
    want = generate(Generation, packed, e, ids)
    first = DeviceGeneration(packed, e, sound_keys(5, torch.as_tensor(ids)), chunk=16)
    first.advance(300)
    saved = first.state_dict()
    again = DeviceGeneration(packed, e, sound_keys(5, torch.as_tensor(ids)), chunk=16)
    again.load_state_dict(saved)
    assert again.t == 300 and int(again.t_dev) == 300
    while not again.done:
        again.advance(128)
    assert torch.equal(want, again.codes)
    # and the states of the two generators are interchangeable
    host = Generation(packed, e, sound_keys(5, torch.as_tensor(ids)))
    host.load_state_dict(saved)
    host.advance(10_000)
    assert torch.equal(want, host.codes)


def test_chunk_must_divide_a_frame():
    packed = PackedDecoder(decoder(layers=2))
    with pytest.raises(ValueError, match="divide 512"):
        DeviceGeneration(packed, enc(1), sound_keys(0, torch.tensor([0])), chunk=100)
    with pytest.raises(ValueError, match="CUDA"):
        DeviceGeneration(packed, enc(1), sound_keys(0, torch.tensor([0])), graphs=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernels,voices", [("torch", 64), ("triton", 64), ("triton", 8)])  # 8: split-K gate
def test_cuda_graph_replay_equals_eager_device_steps(dtype, kernels, voices):
    if kernels == "triton":
        pytest.importorskip("triton")
    packed = PackedDecoder(decoder(layers=10), device="cuda", compute_dtype=dtype, kernels=kernels)
    e, ids = enc(voices, frames=3), list(range(voices))
    eager = generate(DeviceGeneration, packed, e, ids, graphs=False)
    graphed = generate(DeviceGeneration, packed, e, ids, graphs=True, pattern=(700, 1, 512))
    assert torch.equal(eager, graphed)
    gen = DeviceGeneration(packed, e, sound_keys(5, torch.as_tensor(ids)), graphs=True)
    gen.advance(1024)
    saved = gen.state_dict()
    gen.load_state_dict(saved)  # in place: the captured graph keeps working
    gen.advance(10_000)
    assert torch.equal(eager, gen.codes)


@pytest.mark.parametrize("cls", [Generation, DeviceGeneration])
def test_compact_state_rebuilds_the_ring_buffers_exactly(cls):
    """A compact save holds only the samples so far; replaying the last receptive-field steps
    rebuilds every ring buffer bit for bit, before and after the receptive field is filled."""
    dec = decoder(layers=5)
    for conv, d in zip(dec.dilated, (1, 4, 16, 64, 128)):  # sparse dilations: a short receptive field
        conv.dilation = (d,)
    packed = PackedDecoder(dec)
    assert packed.receptive_field == 2 + 2 * 213 == 428
    e, ids = enc(2, frames=1), [4, 5]
    keys = sound_keys(5, torch.as_tensor(ids))
    straight = cls(packed, e, keys)
    straight.advance(480)
    want_state = straight.state_dict()
    straight.advance(10_000)
    for t in (0, 200, 480):
        first = cls(packed, e, keys)
        first.advance(t)
        compact = first.compact_state()
        assert "decoder" not in compact and compact["codes"].shape == (2, t)
        resumed = cls(packed, e, keys)
        resumed.load_state_dict(compact)
        if t == 480:  # replayed from step 52: the rebuilt buffers are the uninterrupted run's
            got = resumed.state_dict()["decoder"]
            assert all(torch.equal(a, b) for a, b in zip(got["buffers"], want_state["decoder"]["buffers"]))
            assert torch.equal(got["start_taps"], want_state["decoder"]["start_taps"])
        resumed.advance(10_000)
        assert torch.equal(resumed.codes, straight.codes), t
    with pytest.raises(ValueError, match="does not match"):
        cls(packed, e[:1], sound_keys(5, torch.as_tensor([4]))).load_state_dict(
            {**compact, "keys": sound_keys(5, torch.as_tensor([4]))})


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_compact_state_later_is_the_compact_state_at_the_time_of_the_call(device):
    """The save taken while generation goes on: on a GPU, copies on a side stream into pinned
    memory, one slice per save; whatever is generated afterwards, the state is the call's."""
    packed = PackedDecoder(decoder(layers=3), device)
    e, keys = enc(3, frames=2), sound_keys(5, torch.tensor([1, 2, 3]))
    gen = DeviceGeneration(packed, e, keys, chunk=64, graphs=device == "cuda")
    pending = []
    for n in (100, 300, 0, 250):
        gen.advance(n)
        pending.append((gen.compact_state(), gen.compact_state_later()))
    gen.advance(10_000)
    for want, later in pending:
        got = later()
        assert got["t"] == want["t"] and torch.equal(got["codes"], want["codes"])
        assert torch.equal(got["keys"], want["keys"])
    resumed = DeviceGeneration(packed, e, keys, chunk=64, graphs=device == "cuda")
    resumed.load_state_dict(pending[1][1]())
    assert resumed.compact_state_later()()["t"] == 400  # host copies start over after a load
    resumed.advance(10_000)
    assert torch.equal(resumed.codes, gen.codes)
