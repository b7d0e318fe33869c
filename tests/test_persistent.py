"""The persistent kernel (kernels: persistent): many steps a launch, grid-wide barriers between phases.

On a CPU it runs in Triton's interpreter with one program (which deals every tile to itself);
the barriers and the cooperative launch are checked by compiling it for an H100 (sm_90).
"""

import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton is not installed")

from onss_tui.model import kernels  # noqa: E402
from onss_tui.model.fastgen import Generation, PackedDecoder  # noqa: E402
from onss_tui.model.graphgen import DeviceGeneration  # noqa: E402
from onss_tui.model.rng import sound_keys  # noqa: E402
from tests.test_graphgen import decoder, enc  # noqa: E402
from tests.test_kernels import HOPPER_SHARED, _compile_for_hopper  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_persistent_step_is_the_pytorch_step(dtype):
    """Teacher-forced logits of the persistent kernel (one launch a step, with the head) against
    the PyTorch layers, and the ring buffers it leaves."""
    dec = decoder(layers=3)  # dilations 1, 2, 4
    ref = PackedDecoder(dec, DEVICE, dtype)
    per = PackedDecoder(dec, DEVICE, dtype, kernels="persistent")
    x = (torch.rand(3, 12, generator=torch.Generator().manual_seed(2)) * 2 - 1).to(DEVICE)
    want, got = ref.teacher_forced(x, enc(3, frames=1)), per.teacher_forced(x, enc(3, frames=1))
    scale = want.abs().max()
    assert torch.isfinite(got).all() and scale > 1
    assert (got - want).abs().max() <= (2e-4 if dtype == torch.float32 else 0.05) * scale
    # the state too: every layer's ring buffer and the startconv ring after 12 steps
    a, b = ref.fresh_state(3), per.fresh_state(3)
    cond = ref.condition(enc(3, frames=1)[:, 0].to(DEVICE))
    for t in range(12):
        ref.step(a, x[:, t], cond)
        per.step(b, x[:, t], cond)
    assert b.t == a.t == 12 and torch.equal(a.start_taps, b.start_taps)
    for ra, rb in zip(a.buffers, b.buffers):
        assert (ra.float() - rb.float()).abs().max() <= (1e-4 if dtype == torch.float32 else 0.05) * ra.abs().max()


def test_persistent_generation_is_the_same_in_any_launches_and_resumes_bit_exactly():
    """Samples made a whole frame a launch (the host-counter generator), in device chunks of
    odd sizes, and after a compact save (ring buffers rebuilt by the kernel's teacher-forced
    replay) are the same bits; and close to PyTorch's (float rounding moves a few draws)."""
    dec = decoder(layers=2)  # dilations 1, 2: a receptive field of 8
    per = PackedDecoder(dec, DEVICE, kernels="persistent")
    e, keys = enc(2, frames=1), sound_keys(5, torch.as_tensor([4, 5]))
    whole = Generation(per, e, keys)
    assert whole.advance(24) == 24
    chunks = DeviceGeneration(per, e, keys, chunk=8)
    for n in (1, 7, 3, 13):
        chunks.advance(n)
    assert chunks.t == 24 and torch.equal(chunks.codes, whole.codes)
    first = Generation(per, e, keys)
    first.advance(11)
    resumed = Generation(per, e, keys)
    resumed.load_state_dict(first.compact_state())
    resumed.advance(13)
    assert torch.equal(resumed.codes[:, :24], whole.codes[:, :24])
    torch_gen = Generation(PackedDecoder(dec, DEVICE), e, keys)
    torch_gen.advance(24)
    assert (torch_gen.codes[:, :24] == whole.codes[:, :24]).float().mean() > 0.5
    assert len(torch.unique(whole.codes[:, :24])) >= 5  # the draws vary


def test_persistent_kernels_refuse_big_batches_and_a_missing_gpu(monkeypatch):
    from onss_tui.model.persistent import MAX_BATCH

    per = PackedDecoder(decoder(layers=1), DEVICE, kernels="persistent")
    with pytest.raises(ValueError, match=f"up to {MAX_BATCH} voices"):
        per.persistent(MAX_BATCH + 1)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if DEVICE.type == "cpu":
        with pytest.raises(RuntimeError, match="kernels 'persistent' asked for, but the fused kernels run on a CUDA"):
            PackedDecoder(decoder(layers=1), DEVICE, kernels="persistent")


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_the_persistent_kernel_compiles_for_hopper_as_a_cooperative_launch(monkeypatch, precision):
    """What the interpreter cannot see: sm_90 code for the kernel as a GPU would launch it (its
    tiles, a cooperative grid), within an SM's shared memory and without spilling registers."""
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("this Triton has no NVIDIA backend")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    launches = []
    monkeypatch.setattr(kernels, "_launch", lambda kernel, grid, *args, **meta: launches.append((kernel, args, meta)))
    for batch in (1, 16, 64):
        monkeypatch.setenv("TRITON_INTERPRET", "1")  # a CPU decoder may ask for the kernels
        packed = PackedDecoder(decoder(layers=2), "cpu", dtype, kernels="persistent")
        gen = Generation(packed, enc(batch, frames=1), sound_keys(1, torch.arange(batch)))
        packed.persistent(batch)  # made here (the interpreter's grid); launched with a GPU's tiles
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        gen.advance(8)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # as the rest of this process expects
    assert len(launches) == 3 and all(meta["launch_cooperative_grid"] for _, _, meta in launches)
    compiled = _compile_for_hopper(launches)
    assert {name for name, *_ in compiled} == {"_steps_kernel"}
    assert all(shared <= HOPPER_SHARED for _, shared, _, _ in compiled), compiled
    assert not [c for c in compiled if c[3]], f"registers spilled to local memory: {compiled}"


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # the stalled launch computes garbage
def test_a_stalled_launch_ends_is_refused_and_the_last_sound_save_stays(tmp_path):
    """A grid of two programs in the interpreter is a grid one of whose programs is not running:
    the first waits at a barrier, gives up after the runner's spin limit (instead of hanging),
    and marks the barrier word. The generation then refuses its samples (no save, no codes),
    the mark stays for every later launch, and the save made before it is untouched."""
    from onss_tui.model.persistent import STALLED, BarrierStall
    from onss_tui.pipeline.generate import BackgroundSaver

    per = PackedDecoder(decoder(layers=1), DEVICE, kernels="persistent")
    gen = Generation(per, enc(2, frames=1), sound_keys(5, torch.as_tensor([4, 5])))
    gen.advance(6)
    gen.check()  # a sound launch passes
    saver = BackgroundSaver(tmp_path / "state.pt")
    saver.save(gen.compact_state_later())
    saver.wait()
    sound = gen.codes[:, :6].clone()

    runner = per.persistent(2)
    runner.programs, runner.spin_limit = 2, 20  # program 1 runs only after program 0 has finished
    assert gen.advance(3) == 3  # it ends
    assert int(runner.bar) & STALLED
    with pytest.raises(BarrierStall, match="stalled.*kernels: triton"):
        saver.save(gen.compact_state_later())
    with pytest.raises(BarrierStall):
        gen.check()
    runner.programs = 1  # a later launch that could pass its barriers still runs through, refused
    gen.advance(2)
    with pytest.raises(BarrierStall):
        gen.state_dict()
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert saved["t"] == 6 and torch.equal(saved["codes"], sound)

    fresh = Generation(PackedDecoder(decoder(layers=1), DEVICE, kernels="persistent"), enc(2, frames=1),
                       sound_keys(5, torch.as_tensor([4, 5])))
    fresh.load_state_dict(saved)  # the run goes on from its last sound save
    fresh.advance(1)
    fresh.check()
    assert torch.equal(fresh.codes[:, :6], sound)
