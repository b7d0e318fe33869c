"""The persistent kernel (kernels: persistent): many steps a launch, grid-wide barriers between phases.

On a CPU it runs in Triton's interpreter: with one program (which deals every tile to itself),
and with several at once (threads, :func:`programs_at_once`), whose barriers must then hold; the
cooperative launch and the registers are checked by compiling it for an H100 (sm_90).
"""

import contextlib
import inspect
import sys
import threading

import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton is not installed")

from onss_tui.engine import kernels  # noqa: E402
from onss_tui.engine.fastgen import Generation, PackedDecoder  # noqa: E402
from onss_tui.engine.graphgen import DeviceGeneration  # noqa: E402
from onss_tui.model.rng import sound_keys  # noqa: E402
from tests.test_graphgen import decoder, enc  # noqa: E402
from tests.test_kernels import HOPPER_SHARED, _compile_for_hopper  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def programs_at_once(kernel_name: str):
    """Triton's interpreter made to run a launch's programs of ``kernel_name`` at the same time,
    one thread each (it runs them one after another), as a GPU runs a cooperative launch: the
    persistent kernel's barriers then really wait for each other and its tiles are really dealt
    out. The interpreter keeps the current program in one global (made per-thread here); its
    atomics are the C++ ones, and memory is the process's own, so every write is seen at once
    (what ``.cg`` ensures on a GPU is not checked here)."""
    from triton.runtime import interpreter

    builder = type(interpreter.interpreter_builder)
    executor = interpreter.GridExecutor
    if not all(hasattr(builder, f) for f in ("set_grid_idx", "set_grid_dim")) or "grid_idx" in builder.__dict__:
        pytest.skip("this Triton's interpreter keeps its program index otherwise")
    current = threading.local()
    builder.grid_idx = property(lambda self: getattr(current, "idx", None),
                                lambda self, idx: setattr(current, "idx", idx))
    serial_init = executor.__init__

    def init(self, fn, *args, **kwargs):
        serial_init(self, fn, *args, **kwargs)
        if fn.__name__ != kernel_name:
            return
        threads, errors = [], []

        def program(idx, kernel_args):
            interpreter.interpreter_builder.grid_idx = idx
            try:
                fn(**kernel_args)
            except BaseException as exc:  # handed to the launching thread
                errors.append(exc)

        def start(kernel_args):  # called once per program, in grid order; the last one waits for all
            b = interpreter.interpreter_builder
            threads.append(threading.Thread(target=program, args=(b.grid_idx, kernel_args)))
            threads[-1].start()
            if len(threads) == b.grid_dim[0] * b.grid_dim[1] * b.grid_dim[2]:
                for t in threads:
                    t.join()
                threads.clear()
                if errors:
                    raise errors[0]

        # the executor inspects the kernel's parameters and globals: a stand-in with the same ones
        names = list(inspect.signature(fn).parameters)
        scope = dict(fn.__globals__, _start=start)
        exec(f"def {fn.__name__}({', '.join(names)}):\n    _start(dict({', '.join(f'{n}={n}' for n in names)}))",
             scope)
        self.fn = scope[fn.__name__]

    executor.__init__ = init
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # a waiting program spins; hand the interpreter on quickly
    try:
        yield
    finally:
        executor.__init__ = serial_init
        del builder.grid_idx
        sys.setswitchinterval(interval)


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


def test_programs_running_at_once_deal_the_tiles_wait_at_the_barriers_and_agree_bit_for_bit():
    """Four programs at once (threads; six gate tiles, three res_skip tiles, one head tile a
    phase: some programs idle through a phase and still meet the barriers) make the very samples
    one program makes, sampling and in the replay that rebuilds a compact save (no head). A
    barrier taken out makes them differ (checked by hand: a race). On a GPU the compiled kernel
    runs four programs against one, which also checks the memory ordering across SMs."""
    dec = decoder(layers=2)
    e, keys = enc(2, frames=1), sound_keys(5, torch.as_tensor([4, 5]))

    def generation(programs):
        per = PackedDecoder(dec, DEVICE, kernels="persistent")
        runner = per.layer_step.runner(2)
        runner.programs = programs
        if DEVICE.type == "cpu":  # waits took up to ~1,000 polls in threads; a fault there ends in seconds
            runner.spin_limit = 1 << 20  # (on a GPU the default: the binaries the other tests compiled)
        return Generation(per, e, keys)

    one = generation(1)
    one.advance(12)
    with programs_at_once("_steps_kernel"):
        four = generation(4)
        four.advance(7)
        resumed = generation(4)
        resumed.load_state_dict(four.compact_state())  # replays 7 steps a launch, teacher-forced
        resumed.advance(5)
        resumed.check()
    assert torch.equal(four.codes[:, :7], one.codes[:, :7])
    assert torch.equal(resumed.codes[:, :12], one.codes[:, :12])
    assert len(torch.unique(one.codes[:, :12])) >= 4


def test_persistent_kernels_refuse_big_batches_and_a_missing_gpu(monkeypatch):
    from onss_tui.engine.persistent import MAX_BATCH

    per = PackedDecoder(decoder(layers=1), DEVICE, kernels="persistent")
    with pytest.raises(ValueError, match=f"up to {MAX_BATCH} voices"):
        per.layer_step.runner(MAX_BATCH + 1)
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
        packed.layer_step.runner(batch)  # made here (the interpreter's grid); launched with a GPU's tiles
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        gen.advance(8)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # as the rest of this process expects
    assert len(launches) == 3 and all(meta["launch_cooperative_grid"] for _, _, meta in launches)
    compiled = _compile_for_hopper(launches)
    assert {name for name, *_ in compiled} == {"_steps_kernel"}
    assert all(shared <= HOPPER_SHARED for _, shared, _, _ in compiled), compiled
    assert not [c for c in compiled if c[3]], f"registers spilled to local memory: {compiled}"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the stalled launch computes garbage (overflows, NaN)
def test_a_stalled_launch_ends_is_refused_and_the_last_sound_save_stays(tmp_path):
    """A grid of two programs in the interpreter is a grid one of whose programs is not running:
    the first waits at a barrier, gives up after the runner's spin limit (instead of hanging),
    and marks the barrier word. The generation then refuses its samples (no save, no codes),
    the mark stays for every later launch, and the save made before it is untouched."""
    from onss_tui.engine.persistent import STALLED, BarrierStall
    from onss_tui.pipeline.stages.generate import BackgroundSaver

    if DEVICE.type == "cuda":
        pytest.skip("on a GPU a cooperative launch runs all its programs: the interpreter's serial grid stalls one")

    per = PackedDecoder(decoder(layers=1), DEVICE, kernels="persistent")
    gen = Generation(per, enc(2, frames=1), sound_keys(5, torch.as_tensor([4, 5])))
    gen.advance(6)
    gen.check()  # a sound launch passes
    saver = BackgroundSaver(tmp_path / "state.pt")
    saver.save(gen.compact_state_later())
    saver.wait()
    sound = gen.codes[:, :6].clone()

    runner = per.layer_step.runner(2)
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
