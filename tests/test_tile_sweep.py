"""The tile sweeps' own code, in benchmarks/: the gate variants (sweep_kernels.py) and the cases,
clock and L2 traffic model of tune_tiles.py. A GPU session has minutes for the sweeps, so they
are run here, in Triton's interpreter (on a GPU, compiled), and a changed kernel signature fails
in CI and not on the GPU.
"""

import importlib

import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton is not installed")

from onss_tui.engine import kernels  # noqa: E402
from tests.test_kernels import BENCHMARKS, DEVICE, HOPPER_SHARED, LARGE, TOL, _compile_for_hopper, rand  # noqa: E402


def benchmark(name: str):
    """A module of benchmarks/, imported as its scripts import each other (their folder on sys.path,
    which _compile_for_hopper's compiler process gets too)."""
    import sys

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


sweep_kernels = benchmark("sweep_kernels")


def test_the_gate_variants_of_the_tile_sweep_are_the_same_gate_and_compile_for_hopper():
    """Variants for benchmarks/tune_tiles.py (benchmarks/sweep_kernels.py): with no flag, the
    engine's gate bit for bit; both ring taps in one loop (one software pipeline), and one dot of
    twice the width over [sigmoid | tanh] weight columns. The same sums in the same order, so a
    GPU session may take either on speed alone. (On the GPU, bit for bit; in the
    interpreter, tl.dot is numpy's matmul, whose BLAS may block a wider product's sums otherwise.)
    A third starts the sums from the conditioning: another order, so only close; its point is a
    256 x 64 tile that compiles without spilling registers."""
    batch, d, t = 20, 16, 77
    for dtype in (torch.float32, torch.bfloat16):
        buf, l = rand(2 * d, batch, 512, dtype=dtype, seed=1), rand(batch, 512, seed=2)
        w, cond = rand(1536, 1024, dtype=dtype, scale=1 / 40, seed=3), rand(batch, 1024, seed=4)
        step = torch.tensor(t, dtype=torch.int64, device=DEVICE)
        outs = [sweep_kernels.gate(buf, step, l, w, cond, d, blocks=LARGE, one_ring=one_ring, wide=wide)
                for one_ring in (False, True) for wide in (False, True)]
        assert torch.equal(outs[0], kernels.gate(buf, step, l, w, cond, d, blocks=LARGE))  # the engine's own
        assert torch.equal(outs[0], outs[2])  # one ring loop: the same dots
        for wide in (outs[1], outs[3]):
            if DEVICE.type == "cuda":
                assert torch.equal(outs[0], wide)
            else:
                torch.testing.assert_close(wide, outs[0], rtol=0, atol=TOL[dtype] / 16)
        first = sweep_kernels.gate(buf, step, l, w, cond, d, blocks=LARGE, cond_first=True)
        torch.testing.assert_close(first.float(), outs[0].float(), rtol=0, atol=TOL[dtype])
    l = l.to(torch.bfloat16)  # as the engine stages it
    args = (buf, step, l, w, cond, outs[0], batch, d, cond.stride(0))
    tile = dict(C=512, BK=64, PRECISION="ieee", WIDEN=False, num_warps=8, num_stages=3)
    variant = sweep_kernels._sweep_gate_kernel
    launches = [(variant, args, dict(tile, BM=128, BN=64, ONE_RING=one_ring, WIDE=wide, COND_FIRST=False))
                for one_ring, wide in [(True, False), (False, True), (True, True)]]
    launches.append((variant, args,
                     dict(tile, BM=256, BN=64, ONE_RING=False, WIDE=False, COND_FIRST=True)))
    compiled = _compile_for_hopper(launches)
    assert len(compiled) == 4 and all(shared <= HOPPER_SHARED for _, shared, _, _ in compiled)
    assert compiled[-1][3] == 0, f"the cond-first gate at 256 x 64 spills: {compiled[-1]}"


def test_every_case_of_the_tile_sweep_runs_through_the_engine_wrappers():
    """benchmarks/tune_tiles.py is for a GPU session's few minutes: each of its cases runs here
    once, in the interpreter, so a changed kernel signature fails in CI and not on the GPU."""
    tune = benchmark("tune_tiles")
    tiles = LARGE + (1,)
    for dtype in (torch.float32, torch.bfloat16):
        for launch, flop in (tune.gate_case(3, dtype, tiles, device=DEVICE),
                             tune.gate_case(3, dtype, tiles, one_ring=True, device=DEVICE),
                             tune.gate_case(3, dtype, tiles, wide=True, device=DEVICE),
                             tune.gate_case(3, dtype, tiles, cond_first=True, device=DEVICE),
                             tune.res_skip_case(3, dtype, tiles, device=DEVICE)):
            launch()
            assert flop > 0
        for split in (0, 3, 24):
            tune.layer_case(3, dtype, split, device=DEVICE)()


def test_the_tile_sweep_prints_time_flops_and_l2_traffic_for_each_tile(monkeypatch, capsys):
    """sweep() with a stand-in clock (the first tile "takes" 20 us, the second 10): each tile's
    line carries the bytes traffic() gives and that over the time, fastest first."""
    tune = benchmark("tune_tiles")
    clock = iter([20.0, 10.0])
    monkeypatch.setattr(tune, "us", lambda launch: (launch(), next(clock))[1])
    tiles = [(32, 128, 512, 1, 1), (16, 64, 64, 1, 1)]  # (gate tiles of BN over 128 are not swept)
    order = tune.sweep("gate", tune.gate_case, 3, torch.bfloat16, tiles, "bf16", device=DEVICE)
    assert order == tiles[::-1]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, cfg, took in zip(lines, order, (10, 20)):
        mb = tune.traffic("gate", 3, cfg, torch.bfloat16) / 1e6
        assert line.startswith(f"gate bf16 batch 3 {cfg}: {took:.1f} us")
        assert f" {mb:.0f} MB {mb / took:.2f} TB/s" in line


@pytest.mark.skipif(DEVICE.type == "cuda", reason="counts the loads and stores of Triton's CPU interpreter")
def test_the_memory_traffic_model_of_the_tile_sweep_matches_the_bytes_the_kernels_move(monkeypatch):
    """At large batches a layer is bound by the bytes its tiles move between the SMs and the L2
    cache (each tile re-reads the operands it shares with its neighbours): tune_tiles.py prints
    that traffic beside each time, from a formula. Here the formula meets the kernels: every byte
    each program loads or stores is counted in the interpreter, at the GPU's tile shapes, with a
    ragged last row tile and the split-K pair."""
    from triton.runtime import interpreter

    moved = [0]
    load, store = interpreter.InterpreterBuilder.create_masked_load, interpreter.InterpreterBuilder.create_masked_store

    def counted_load(self, ptrs, mask, other, *rest):
        moved[0] += int(mask.data.sum()) * interpreter._get_np_dtype(ptrs.get_element_ty()).itemsize
        return load(self, ptrs, mask, other, *rest)

    def counted_store(self, ptrs, value, mask, *rest):
        moved[0] += int(mask.data.sum()) * value.data.dtype.itemsize
        return store(self, ptrs, value, mask, *rest)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_load", counted_load)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_store", counted_store)
    tune = benchmark("tune_tiles")

    def count(launch) -> int:
        moved[0] = 0
        launch()
        return moved[0]

    batch, d = 150, 4
    for dtype, cfg in [(torch.bfloat16, (128, 64, 64, 8, 3)), (torch.float32, (64, 128, 128, 4, 3))]:
        gate, _ = tune.gate_case(batch, dtype, cfg, device=DEVICE)
        assert count(gate) == tune.traffic("gate", batch, cfg, dtype)
        res_skip, _ = tune.res_skip_case(batch, dtype, cfg, device=DEVICE)
        assert count(res_skip) == tune.traffic("res_skip", batch, cfg, dtype, split=0)
        cfg = (16, 64, 128, 4, 2)
        buf, t = rand(2 * d, 20, 512, dtype=dtype), torch.tensor(9, device=DEVICE)
        l, cond = rand(20, 512), rand(20, 1024)
        w, w_rs, b_rs = rand(1536, 1024, dtype=dtype), rand(512, 256, dtype=dtype), rand(256)
        for split in (0, 6):  # the last layer (no residual), whole and split
            lq = None if dtype == torch.float32 else l.to(dtype)  # staged below float32, as the engine does
            def layer(split=split, lq=lq):  # called at once below, in this iteration
                return kernels.layer(buf, t, l, w, cond, w_rs, b_rs, rand(20, 256), d, False,  # noqa: B023
                                     blocks=cfg, split=split, lq=lq)  # noqa: B023
            expected = (tune.traffic("gate_split", 20, cfg, dtype, split=split) if split else
                        tune.traffic("gate", 20, cfg, dtype))
            assert count(layer) == expected + tune.traffic("res_skip", 20, cfg, dtype, split=split, residual=False)
