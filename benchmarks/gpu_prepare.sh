#!/usr/bin/env bash
# Run HERE (on the development machine, which reaches PyPI) before a GPU session: fills .device/
# (git-ignored) with what the GPU machine lacks and cannot download itself:
#   .device/whl     wheels for its Python 3.12 of this project's dependencies its image does not have
#                   (its image already holds torch, triton, numpy, pyyaml, rich, safetensors, nvidia-ml-py, pytest;
#                   pytest-timeout is brought for the per-test limits of gpu_session.sh)
#   .device/golden  a copy of ../shared/golden (only the checkout travels to the GPU machine)
# Then, through the device tool: run `bash benchmarks/gpu_session.sh tests` and `... bench`
# with carry [".device"] (see docs/benchmarks.md, "Measuring on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .device/whl && mkdir -p .device/whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .device/whl \
  pydantic pydantic-core annotated-types typing-inspection \
  soundfile cffi pycparser soxr platformdirs google-crc32c \
  textual==8.2.8 rich==15.0.0 typing-extensions mdit-py-plugins linkify-it-py uc-micro-py pytest-asyncio pytest-timeout
if [ -d ../shared/golden ]; then
  rm -rf .device/golden && cp -r ../shared/golden .device/golden && chmod -R u+w .device/golden
fi
du -sh .device/whl .device/golden 2>/dev/null || true
