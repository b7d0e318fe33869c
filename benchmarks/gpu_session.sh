#!/usr/bin/env bash
# Run THERE (on the GPU machine, through the device tool, with carry [".device"]):
#   bash benchmarks/gpu_session.sh tests    the CUDA tests (graphs, fused kernels, parity, OOM), ~3 min
#   bash benchmarks/gpu_session.sh bench    onss bench: every precision x kernels x batch, fidelity, ~5 min
#   bash benchmarks/gpu_session.sh tune     tile sweeps of gate / res_skip at batches 4096, 512, 64, 1
#   bash benchmarks/gpu_session.sh profile  where a bf16 step's GPU time goes, fused and PyTorch
#   bash benchmarks/gpu_session.sh first    tests, profile and a focused tune in one call (~6 min); then `bench`
#   bash benchmarks/gpu_session.sh all      for a 15-minute session: the most that one call (one machine start,
#                                           under 9.5 min) can learn; the persistent kernel first
# Everything it prints also lands in $OUT (pytest.log, bench.md, bench.json, env.txt), which the
# device tool brings back. Prepare .device/ first with benchmarks/gpu_prepare.sh (here).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/onss-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ONSS_DATA_DIR=/tmp/onss-data ONSS_CACHE_DIR=/tmp/onss-cache
if [ -d .device/whl ] && [ -z "${ONSS_NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else  # no wheels, or already installed by the call that runs this one (`first`)
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
fi
[ -d .device/golden ] && export ONSS_GOLDEN=$PWD/.device/golden
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, torch, triton; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.txt"
case "${1:-tests}" in
  tests)  # ONSS_TESTS: other test files
    python3 -m pytest -q -p no:cacheprovider -o addopts="" --timeout=120 -rfE \
      ${ONSS_TESTS:-tests/test_kernels.py tests/test_tile_sweep.py tests/test_persistent.py tests/test_graphgen.py \
        tests/test_precision.py tests/test_model_golden.py tests/faults/test_kill_and_space.py::test_out_of_memory_halves_the_batch} \
      2>&1 | tee "$OUT/pytest.log"
    ;;
  bench)  # ONSS_BENCH: other precisions, kernels, batches, fidelity steps
    python3 -m onss_tui.cli bench --device cuda --steps 128 ${ONSS_GOLDEN:+--golden "$ONSS_GOLDEN"} \
      ${ONSS_BENCH:---precision bf16 tf32 fp32 --kernels torch triton persistent --batch 1 64 512 2048 4096 --fidelity-samples 2048} \
      --no-save --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.md"
    ;;
  tune)
    python3 benchmarks/tune_tiles.py --batch 4096 512 64 1 ${ONSS_TUNE_FOCUS:-} 2>&1 | tee "$OUT/tune.txt"
    ;;
  profile)
    for k in triton torch; do
      python3 benchmarks/profile_step.py --precision bf16 --kernels $k --batch 1 4096 --rows 8 2>&1 | tee -a "$OUT/profile.txt"
    done
    python3 benchmarks/profile_step.py --precision bf16 --kernels persistent --batch 1 64 --rows 4 2>&1 | tee -a "$OUT/profile.txt"
    ;;
  first)  # one call of about 6 minutes: the CUDA tests, then where the time goes, then the tile sweeps
    export ONSS_NO_WHEELS=1
    timeout 240 bash "$0" tests >/dev/null 2>&1; tail -n 30 "$OUT/pytest.log"
    timeout 60 bash "$0" profile >/dev/null 2>&1; grep -E "batch|_kernel|total" "$OUT/profile.txt" | cut -c1-60,130-160
    ONSS_TUNE_FOCUS=--focus timeout 150 bash "$0" tune 2>&1 | grep -v "^$"
    ;;
  all)  # each part under its own limit, the newest (unmeasured) code first
    export ONSS_NO_WHEELS=1
    ONSS_TESTS="tests/test_persistent.py tests/test_kernels.py tests/test_tile_sweep.py tests/test_graphgen.py" \
      timeout 150 bash "$0" tests | tail -n 20
    ONSS_BENCH="--precision bf16 --kernels persistent triton torch --batch 1 16 64 4096 8192 --fidelity-samples 1024" \
      timeout 240 bash "$0" bench
    timeout 50 python3 benchmarks/profile_step.py --precision bf16 --kernels persistent --batch 1 64 --rows 6 \
      2>&1 | tee "$OUT/profile.txt" | grep -E "batch|_kernel|total" | cut -c1-60,130-160
    timeout 90 python3 benchmarks/tune_tiles.py --batch 4096 --focus 2>&1 | tee "$OUT/tune.txt" | grep -v "^$"
    ;;
  *) echo "usage: gpu_session.sh tests|bench|tune|profile|first|all"; exit 2 ;;
esac
