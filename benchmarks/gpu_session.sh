#!/usr/bin/env bash
# Run THERE (on the GPU machine, through the device tool, with carry [".device"]):
#   bash benchmarks/gpu_session.sh tests    the CUDA tests (graphs, fused kernels, parity, OOM), ~3 min
#   bash benchmarks/gpu_session.sh bench    onss bench: every precision x kernels x batch, fidelity, ~6 min
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
else
  export PYTHONPATH=$PWD
fi
[ -d .device/golden ] && export ONSS_GOLDEN=$PWD/.device/golden
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, torch, triton; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.txt"
case "${1:-tests}" in
  tests)
    python3 -m pytest -q -p no:cacheprovider -o addopts="" \
      tests/test_kernels.py tests/test_graphgen.py tests/test_precision.py tests/test_model_golden.py \
      tests/faults/test_kill_and_space.py::test_out_of_memory_halves_the_batch \
      2>&1 | tee "$OUT/pytest.log"
    ;;
  bench)
    python3 -m onss_tui.cli bench --device cuda --precision bf16 tf32 fp32 --kernels torch triton \
      --batch 1 64 512 2048 4096 --steps 256 ${ONSS_GOLDEN:+--golden "$ONSS_GOLDEN"} --fidelity-samples 4096 \
      --no-save --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.md"
    ;;
  *) echo "usage: gpu_session.sh tests|bench"; exit 2 ;;
esac
