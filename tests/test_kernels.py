"""The fused Triton layer kernels (onss_tui.engine.kernels) against the PyTorch layer step.

On a machine without CUDA the kernels run in Triton's interpreter (conftest sets TRITON_INTERPRET=1
there); on a GPU they are compiled. Either way the numbers are compared with the PyTorch path, in
fp32 (to float rounding) and bf16 (to bf16 rounding), and the fused generator must resume and
switch between the host and the device counter bit for bit, as the PyTorch one does.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton is not installed")

from onss_tui.bench import random_model  # noqa: E402
from onss_tui.engine import kernels  # noqa: E402
from onss_tui.engine.fastgen import Generation, PackedDecoder  # noqa: E402
from onss_tui.engine.graphgen import DeviceGeneration  # noqa: E402
from onss_tui.model.rng import sound_keys  # noqa: E402
from tests.test_graphgen import decoder, enc  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"  # the tile sweeps' kernels (tests/test_tile_sweep.py)
# the interpreter's tiles (few, large programs); a GPU would spend minutes compiling those
LARGE = (32, 256, 512, 1) if DEVICE.type == "cpu" else (32, 64, 128, 4)
TOL = {torch.float32: 2e-5, torch.bfloat16: 1.6e-2}  # bf16: one unit in the last place of g near 1


def rand(*shape, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(DEVICE, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch,d,t", [(1, 1, 0), (5, 4, 13), (70, 512, 1_000_003)])
def test_gate_reads_the_ring_buffer_and_matches_pytorch(dtype, batch, d, t):
    buf = rand(2 * d, batch, 512, dtype=dtype, seed=1)
    l = rand(batch, 512, seed=2)
    w = rand(1536, 1024, dtype=dtype, scale=1 / 40, seed=3)
    cond_all = rand(batch, 3, 1024, seed=4)  # a strided column slice, as the generator passes it
    step = torch.tensor(t, dtype=torch.int64, device=DEVICE)
    before = buf.clone()

    g = kernels.gate(buf, step, l, w, cond_all[:, 1], d)

    taps = torch.cat([buf[t % (2 * d)], buf[(t + d) % (2 * d)], l.to(dtype)], 1).float()  # x[t-2d], x[t-d], x[t]
    z = taps @ w.float() + cond_all[:, 1]
    want = torch.sigmoid(z[:, :512]) * torch.tanh(z[:, 512:])
    assert g.dtype == dtype and g.shape == (batch, 512)
    assert (g.float() - want).abs().max().item() < TOL[dtype]
    assert torch.equal(buf, before)  # the gate only reads the state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_sized_tiles_loop_over_k_and_tile_the_batch(dtype):
    """The tiles a GPU uses (16 x 16, BK 64: many programs, 24 K steps) give the same numbers as
    the interpreter's large ones."""
    batch, d, t = 20, 16, 77
    buf, l = rand(2 * d, batch, 512, dtype=dtype, seed=1), rand(batch, 512, seed=2)
    w, cond = rand(1536, 1024, dtype=dtype, scale=1 / 40, seed=3), rand(batch, 1024, seed=4)
    step = torch.tensor(t, dtype=torch.int64, device=DEVICE)
    small = kernels.gate(buf, step, l, w, cond, d, blocks=(16, 16, 64, 4))
    large = kernels.gate(buf, step, l, w, cond, d, blocks=LARGE)
    assert (small.float() - large.float()).abs().max().item() <= TOL[dtype]
    w_rs, b_rs, skip = rand(512, 768, dtype=dtype, scale=1 / 20, seed=5), rand(768, seed=6), rand(batch, 256, seed=7)
    outs = []
    for blocks in [(16, 16, 64, 4), LARGE]:
        l2, skip2, buf2 = l.clone(), skip.clone(), buf.clone()
        kernels.res_skip(large, w_rs, b_rs, l2, skip2, buf2, step, d, residual=True, blocks=blocks)
        outs.append((l2, skip2, buf2))
    assert (outs[0][0] - outs[1][0]).abs().max().item() < 1e-4
    assert (outs[0][1] - outs[1][1]).abs().max().item() < 1e-4
    assert torch.equal(outs[0][2], outs[1][2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [3, 70])
def test_res_skip_updates_in_place_and_stores_the_layer_input(dtype, batch):
    d, t = 8, 21
    slot = t % (2 * d)
    g = rand(batch, 512, dtype=dtype, seed=5)
    w = rand(512, 768, dtype=dtype, scale=1 / 20, seed=6)
    b = rand(768, seed=7)
    l, skip, buf = rand(batch, 512, seed=8), rand(batch, 256, seed=9), rand(2 * d, batch, 512, dtype=dtype, seed=10)
    l0, skip0, buf0 = l.clone(), skip.clone(), buf.clone()
    step = torch.tensor(t, dtype=torch.int64, device=DEVICE)

    kernels.res_skip(g, w, b, l, skip, buf, step, d, residual=True)

    rs = g.float() @ w.float() + b
    assert (l - (l0 + rs[:, :512])).abs().max().item() < 1e-4
    assert (skip - (skip0 + rs[:, 512:])).abs().max().item() < 1e-4
    stored, want_stored = buf[slot].float(), l0.to(dtype).float()  # x[t], within one unit of the dtype
    assert ((stored - want_stored).abs() <= want_stored.abs() * (2**-7 if dtype == torch.bfloat16 else 0)).all()
    others = [s for s in range(2 * d) if s != slot]
    assert torch.equal(buf[others], buf0[others])

    # the last layer: skip only; l is left alone, and stored in the ring buffer
    w_last, b_last = rand(512, 256, dtype=dtype, scale=1 / 20, seed=11), rand(256, seed=12)
    l1, skip1 = l.clone(), skip.clone()
    buf[slot] = 0
    buf1 = buf.clone()
    kernels.res_skip(g, w_last, b_last, l, skip, buf, step, d, residual=False)
    assert (skip - (skip1 + g.float() @ w_last.float() + b_last)).abs().max().item() < 1e-4
    assert torch.equal(l, l1) and torch.equal(buf[others], buf1[others])
    stored, want_stored = buf[slot].float(), l1.to(dtype).float()
    assert ((stored - want_stored).abs() <= want_stored.abs() * (2**-7 if dtype == torch.bfloat16 else 0)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch,split", [(1, 6), (5, 3), (20, 6)])
def test_split_k_layer_matches_the_unsplit_layer_and_pytorch(dtype, batch, split):
    """Small batches split the gate's 1536-long sum over programs (each within one tap) and
    res_skip adds the partial sums, the conditioning and the gate as it reads them: the same
    layer as gate + res_skip, for a residual layer and the last one."""
    d, t = 4, 1_000_003  # every tap slot wraps
    w = rand(1536, 1024, dtype=dtype, scale=1 / 40, seed=3)
    cond_all = rand(batch, 3, 1024, seed=4)
    for residual, width in [(True, 768), (False, 256)]:
        w_rs, b_rs = rand(512, width, dtype=dtype, scale=1 / 20, seed=5), rand(width, seed=6)
        state = [rand(batch, 512, seed=2), rand(batch, 256, seed=7), rand(2 * d, batch, 512, dtype=dtype, seed=1)]
        split_state, plain_state = [x.clone() for x in state], [x.clone() for x in state]
        step = torch.tensor(t, dtype=torch.int64, device=DEVICE)
        l, skip, buf = split_state
        kernels.layer(buf, step, l, w, cond_all[:, 1], w_rs, b_rs, skip, d, residual, split=split)
        l2, skip2, buf2 = plain_state
        kernels.layer(buf2, step, l2, w, cond_all[:, 1], w_rs, b_rs, skip2, d, residual, split=0)

        l0, skip0, buf0 = state  # PyTorch, in float32 from the same (dtype-rounded) operands
        taps = torch.cat([buf0[t % (2 * d)], buf0[(t + d) % (2 * d)], l0.to(dtype)], 1).float()
        z = taps @ w.float() + cond_all[:, 1]
        g = (torch.sigmoid(z[:, :512]) * torch.tanh(z[:, 512:])).to(dtype).float()
        rs = g @ w_rs.float() + b_rs
        tol = 0.05 if dtype == torch.bfloat16 else 1e-4  # bf16: g rounded to bf16 either side of a tie
        want_l = l0 + rs[:, :512] if residual else l0
        for got in (l, l2):
            assert (got - want_l).abs().max().item() < tol
        for got in (skip, skip2):
            assert (got - (skip0 + rs[:, -256:])).abs().max().item() < tol
        assert torch.equal(buf, buf2)  # both stored the layer input in slot t mod 2d, nothing else
        if dtype == torch.float32:
            assert torch.equal(buf[t % (2 * d)], l0)


@pytest.mark.parametrize("split", [0, 6])
def test_a_staged_bf16_input_gives_the_same_layer_bit_for_bit_and_is_renewed_for_the_next(split):
    """Below float32 the engine keeps each layer's input also in the compute dtype (``lq``, from
    start and then from each res_skip), so the gate reads x[t] in half the bytes instead of
    converting float32 itself: the same numbers exactly, through a residual layer and the last."""
    batch, d, t, dtype = 20, 4, 1_000_003, torch.bfloat16
    w = rand(1536, 1024, dtype=dtype, scale=1 / 40, seed=3)
    cond = rand(batch, 1024, seed=4)
    taps, x = rand(2, batch, seed=8), rand(batch, seed=9)
    w_start, b_start = rand(3, 512, seed=10), rand(512, seed=11)
    w_skip, b_skip = rand(512, 256, scale=1 / 20, seed=12), rand(256, seed=13)
    step = torch.tensor(t, dtype=torch.int64, device=DEVICE)

    def renews(lq, l):  # lq is l in bfloat16 (Triton's rounding: to nearest on a GPU, towards 0 interpreted)
        return bool(((lq.float() - l).abs() <= l.abs() * 2**-7).all()) and not torch.equal(lq.float(), l)

    runs = []
    for staged in (False, True):
        lq = torch.empty(batch, 512, dtype=dtype, device=DEVICE) if staged else None
        l, skip = kernels.start(taps.clone(), step, x, w_start, b_start, w_skip, b_skip, lq=lq)
        if staged:
            assert renews(lq, l)
        buf = rand(2 * d, batch, 512, dtype=dtype, seed=1)
        for residual, width in [(True, 768), (False, 256)]:
            w_rs, b_rs = rand(512, width, dtype=dtype, scale=1 / 20, seed=5), rand(width, seed=6)
            kernels.layer(buf, step, l, w, cond, w_rs, b_rs, skip, d, residual, split=split, lq=lq)
            if staged and residual:
                assert renews(lq, l)  # the next layer's input
        runs.append((l, skip, buf))
    for plain, staged in zip(*runs):
        assert torch.equal(plain, staged)


@pytest.mark.parametrize("batch", [1, 20])
def test_start_head_and_sampler_match_pytorch(batch):
    from onss_tui.engine.fastgen import sample
    from onss_tui.model.rng import sound_keys, uniform

    t = 7
    step = torch.tensor(t, dtype=torch.int64, device=DEVICE)
    # start: startconv over x[t-2], x[t-1], x[t] and skip_start; x[t] goes into slot t mod 2
    taps, x = rand(2, batch, seed=1), rand(batch, seed=2)
    w, b, ws, bs = rand(3, 512, seed=3), rand(512, seed=4), rand(512, 256, scale=1 / 20, seed=5), rand(256, seed=6)
    before = taps.clone()
    l, skip = kernels.start(taps, step, x, w, b, ws, bs)
    want_l = before[1][:, None] * w[0] + before[0][:, None] * w[1] + x[:, None] * w[2] + b  # t odd: slot 1 is t-2
    assert (l - want_l).abs().max().item() < 1e-5
    assert (skip - (want_l @ ws + bs)).abs().max().item() < 1e-4
    assert torch.equal(taps[1], x) and torch.equal(taps[0], before[0])
    # head: relu(relu(skip) @ w1 + cond) @ w2 + b2, cond a strided slice
    w1, w2, b2 = rand(256, 256, scale=1 / 16, seed=7), rand(256, 256, scale=1 / 16, seed=8), rand(256, seed=9)
    cond = rand(batch, 300, seed=10)[:, 44:]
    logits = kernels.head(skip, w1, cond, w2, b2)
    want = torch.relu(torch.relu(skip) @ w1 + cond) @ w2 + b2
    assert (logits - want).abs().max().item() < 1e-4 * max(1.0, want.abs().max().item())
    # sampler: the counter-based uniform recomputed in the kernel, the inverse CDF, codes and prev
    keys = sound_keys(11, torch.arange(batch)).to(DEVICE)
    codes = torch.zeros(batch, 9, dtype=torch.uint8, device=DEVICE)
    prev = torch.zeros(batch, device=DEVICE)
    for scale, s in ((1.0, 7), (0.05, 7), (0.05, 3)):  # peaked and flat distributions, two steps
        codes.zero_()
        at = torch.tensor(s, dtype=torch.int64, device=DEVICE)
        kernels.sample(logits * scale, keys, at, codes, prev)
        k = sample(logits * scale, uniform(keys, s))[:, 0]  # the uniform is recomputed bit for bit
        assert torch.equal(codes[:, s].long(), k) and torch.equal(prev, (k.float() - 128) / 128)
        assert not codes[:, :s].any() and not codes[:, s + 1:].any()


@pytest.mark.parametrize("precision,split", [("fp32", 0), ("bf16", 0), ("bf16", 6)])
def test_a_fused_step_of_the_full_model_matches_the_pytorch_step(monkeypatch, precision, split):
    """All 30 layers of the real-size model, from a mid-generation state (every ring buffer full,
    the step far from zero so every slot arithmetic wraps), two steps; with the gate unsplit and
    split-K (as a GPU runs small batches)."""
    monkeypatch.setattr(kernels, "_split", lambda batch: split)
    model = random_model(str(DEVICE), precision)
    ref, fused = model.packed(), model.with_precision(precision, kernels="triton").packed()
    state = ref.fresh_state(2)
    state.t = 12_345
    g = torch.Generator().manual_seed(0)
    for buf in state.buffers:
        buf.copy_(torch.randn(buf.shape, generator=g))
    state.start_taps.copy_(torch.randn(2, 2, generator=g) * 0.3)
    fused_state = copy.deepcopy(state)
    cond = ref.condition(torch.randn(2, 16, generator=g) * 3)
    for _ in range(2):
        x = torch.rand(2, generator=g).to(DEVICE) * 2 - 1
        want, got = ref.step(state, x, cond), fused.step(fused_state, x, cond)
        if precision == "fp32":
            assert (got - want).abs().max().item() < 1e-3 * max(1.0, want.abs().max().item())
        else:  # same weights and states in bf16; compare the distributions the sampler draws from
            p, q = torch.log_softmax(want, -1), torch.log_softmax(got, -1)
            kl = (p.exp() * (p - q)).sum(-1)
            assert kl.max().item() < 1e-2
            assert torch.equal(want.argmax(-1), got.argmax(-1))
    assert fused_state.t == state.t == 12_347
    drift = 2**-5 if precision == "bf16" else 1e-5  # of the layer's scale: the sums round differently
    for a, b in zip(state.buffers, fused_state.buffers):  # every layer stored its input
        assert (a.float() - b.float()).abs().max() <= drift * a.float().abs().max()


@pytest.mark.parametrize("dtype,split", [(torch.float32, 0), (torch.bfloat16, 0), (torch.bfloat16, 6)])
def test_fused_generation_resumes_and_changes_counters_bit_exactly(monkeypatch, dtype, split):
    """Uninterrupted on the device counter == host counter for half, saved, loaded, device counter
    for the rest: the same codes and the same ring buffers, bit for bit (split: the small-batch
    split-K gate)."""
    monkeypatch.setattr(kernels, "_split", lambda batch: split)
    packed = PackedDecoder(decoder(layers=3), DEVICE, dtype, kernels="triton")  # ring buffers of 2, 4, 8
    e, keys = enc(2, frames=1), sound_keys(5, torch.tensor([3, 4]))

    whole = DeviceGeneration(packed, e, keys, chunk=8, graphs=False)
    whole.advance(20)

    first = Generation(packed, e, keys)
    first.advance(9)
    saved = first.state_dict()
    rest = DeviceGeneration(packed, e, keys, chunk=8, graphs=False)
    rest.load_state_dict(saved)
    rest.advance(11)

    assert torch.equal(whole.codes[:, :20], rest.codes[:, :20])
    assert all(torch.equal(a, b) for a, b in zip(whole.state.buffers, rest.state.buffers))
    assert len(torch.unique(whole.codes[:, :20])) > 3  # it really sampled


def test_fused_and_pytorch_generators_sample_alike():
    """fp32: the fused kernels and PyTorch sum in other orders, so single codes may differ late in a
    sound, but a short stretch of a small model draws the same samples."""
    dec = decoder(layers=3)
    e, keys = enc(2, frames=1), sound_keys(9, torch.tensor([0, 1]))
    a = Generation(PackedDecoder(dec, DEVICE), e, keys)
    b = Generation(PackedDecoder(dec, DEVICE, kernels="triton"), e, keys)
    a.advance(12)
    b.advance(12)
    assert torch.equal(a.codes[:, :12], b.codes[:, :12])


def test_asking_for_the_kernels_where_they_cannot_run_says_why(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    why = kernels.why_unavailable(torch.device("cpu"))
    assert "CUDA GPU" in why and "kernels: torch" in why
    with pytest.raises(RuntimeError, match="kernels 'triton' asked for, but the fused kernels run on a CUDA GPU"):
        PackedDecoder(decoder(layers=2), "cpu", kernels="triton")
    with pytest.raises(ValueError, match="kernels must be one of torch, triton"):
        PackedDecoder(decoder(layers=2), "cpu", kernels="cuda")
    monkeypatch.setattr(kernels, "triton", None)
    assert "Triton is not installed" in kernels.why_unavailable(torch.device("cuda"))


def test_nsynth_keeps_its_kernels_across_precisions():
    model = random_model(str(DEVICE), "fp32").with_precision("bf16", kernels="triton")
    assert model.kernels == "triton" and model.with_precision("fp32").kernels == "triton"
    assert "kernels='triton'" in repr(model)
    assert model.packed().kernels == "triton" and model.packed().compute_dtype == torch.bfloat16
    assert np.isfinite(model.log_probs(np.zeros((1, 2), np.float32), np.zeros((1, 1, 16), np.float32),
                                       mode="incremental")).all()


def test_choose_kernels_times_both_and_lets_the_caller_veto_the_fused_ones():
    from onss_tui.engine.auto import choose_kernels

    asked = []

    def veto(k):
        asked.append(k)
        return False

    choice, rates = choose_kernels(random_model(str(DEVICE), "fp32"), batch=1, steps=1, warm=1,
                                   candidates=["torch", "triton"], acceptable=veto)
    assert set(rates) == {"torch", "triton"} and all(r > 0 for r in rates.values())
    assert choice == "torch"  # PyTorch needs no check; the fused kernels were asked about only if faster
    assert asked == (["triton"] if rates["triton"] > rates["torch"] else [])


HOPPER_SHARED = 232_448  # bytes of shared memory one program may use on an H100 / H200 (227 KB)


def _launches_of_a_step(monkeypatch, batch: int, precision: str) -> list:
    """The (kernel, arguments, options) a GPU would get for one fused generation step of ``batch``
    voices: the engine's own wrappers run with _launch recorded instead of executed, and the
    tiles and dot precisions a GPU uses (not the interpreter's)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # a CPU decoder may ask for the kernels
    packed = PackedDecoder(decoder(layers=2), "cpu", dtype, kernels="triton")  # 2 layers: every kernel, both res_skips
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", precision == "tf32")
    seen = []
    monkeypatch.setattr(kernels, "_launch", lambda kernel, grid, *args, **meta: seen.append((kernel, args, meta)))
    gen = Generation(packed, enc(batch, frames=1), sound_keys(1, torch.arange(batch)))
    gen.advance(1)
    return seen


COMPILE_FOR_HOPPER = """
import json, os, sys
os.environ.pop("TRITON_INTERPRET", None)  # compile: the @triton.jit functions, not the interpreter's
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import importlib, re, subprocess, tempfile
out = []
for module, name, signature, constexprs, aligned, options in json.load(sys.stdin):
    fn = getattr(importlib.import_module(module), name)
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    src = ASTSource(fn, signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:  # registers and spills, from the binary
        cubin.write(compiled.asm["cubin"]), cubin.flush()
        dump = lambda *what: subprocess.run([triton.knobs.nvidia.cuobjdump.path, *what, cubin.name],
                                            capture_output=True, text=True, check=True).stdout
        regs = int(re.search(r"REG:(\\d+)", dump("-res-usage")).group(1))
        local = len(re.findall(r"\\b(?:STL|LDL)\\b", dump("-sass")))  # loads and stores to local memory
    out.append([compiled.metadata.shared, regs, local])
print(json.dumps(out))
"""


def _compile_for_hopper(launches) -> list[tuple[str, int, int, int]]:
    """Each (kernel, args, meta) compiled for sm_90 in a fresh interpreter (this one's kernels may
    be the interpreter's), specialised as a GPU launch specialises it (Triton's own rule: pointers
    and integers that are multiples of 16 are marked so, integers equal to 1 become constants; the
    marks let loads vectorise and pipeline, which takes more shared memory); for each distinct
    launch (the kernel's name, the shared memory a program needs in bytes, the registers a thread
    uses, the instructions that load or store local memory: ptxas's spills)."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.nvidia.compiler import CUDABackend

    jobs = []
    for kernel, args, meta in launches:
        meta = dict(meta)
        options = {k: meta.pop(k) for k in ("num_warps", "num_stages", "launch_cooperative_grid") if k in meta}
        options["enable_fp_fusion"] = True  # as _launch asks
        names = [n for n in kernel.arg_names if n not in meta]
        signature, aligned = {}, []
        for n, a in zip(names, args):
            kind, mark = native_specialize_impl(CUDABackend, a, False, True, True)
            if kind == "constexpr":
                meta[n] = mark
            else:
                signature[n] = kind
                aligned += [n] if mark == "D" else []
        signature.update({n: "constexpr" for n in meta})
        job = [kernel.fn.__module__, kernel.fn.__name__, signature, meta, aligned, options]
        if job not in jobs:
            jobs.append(job)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCHMARKS), *filter(None, [env.get("PYTHONPATH")])])  # sweep_kernels
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], input=json.dumps(jobs), env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [(job[1], *measured) for job, measured in zip(jobs, json.loads(done.stdout))]


@pytest.mark.parametrize("precision", ["bf16", "tf32", "fp32"])
def test_every_launch_of_a_step_compiles_for_hopper_within_its_shared_memory_and_registers(monkeypatch, precision):
    """What the interpreter cannot see: Triton's compiler for an H100 (sm_90) accepts each kernel
    as the engine launches it at batches 1 to 8192, each fits in an SM's shared memory (the
    first GPU session found a variable redefined with another shape, and float32 operand tiles
    that needed 264 KB) and none spills registers to local memory (ptxas's own count; a spilling
    tile is slow however well it is pipelined). No GPU is needed: Triton compiles for a target it
    is told."""
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("this Triton has no NVIDIA backend")
    launches = []
    for batch in (1, 16, 64, 512, 8192):
        launches += _launches_of_a_step(monkeypatch, batch, precision)
        monkeypatch.undo()
    compiled = _compile_for_hopper(launches)
    assert {name for name, *_ in compiled} == {"_start_kernel", "_gate_split_kernel", "_gate_kernel",  # split: <= 16
                                               "_res_skip_kernel", "_dense_kernel", "_sample_kernel"}
    too_big = [(name, shared) for name, shared, _, _ in compiled if shared > HOPPER_SHARED]
    assert not too_big, f"shared memory over {HOPPER_SHARED} bytes: {too_big}"
    spilled = [(name, regs, local) for name, _, regs, local in compiled if local]
    assert not spilled, f"registers spilled to local memory (name, registers, instructions): {spilled}"
