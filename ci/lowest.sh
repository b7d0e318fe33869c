#!/usr/bin/env bash
# ci/lowest.sh: the lowest versions pyproject.toml allows, installed together and tested.
# A fresh venv (ONSS_LOWEST_VENV, default /tmp/onss-lowest, made anew), the CPU build of torch 2.13 as .ci/run
# installs it (PyPI's lower ones are CUDA builds of several GB: torch's floor, 2.7, was tested by hand), then the
# package (editable) with every other direct dependency at its floor, and pytest, pytest-asyncio and hypothesis
# at the test extra's floors (the rest of that extra pins textual and rich for the snapshots: left out).
# uv, where it is on PATH (ONSS_LOWEST_PIP=1: pip all the same): uv pip install --resolution lowest-direct;
# otherwise pip with the constraints ci/floors.py writes (name==floor). Either way the installed versions
# are then checked against the floors, and a short selection of tests runs, one that touches each
# dependency (soundfile: clean and its MP3 check; pydantic, pyyaml: recipes; numpy, soxr, safetensors,
# google-crc32c: pipeline, the recorded pads, encode, checkpoint and weight cache; textual, rich: the TUI;
# hypothesis: grid).
# About 3 minutes on 2 cores. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ONSS_LOWEST_VENV:-/tmp/onss-lowest}
TEST_PACKAGES=pytest,pytest-asyncio,hypothesis
TESTS=(
  tests/test_clean.py tests/test_package_deps.py tests/test_recipe.py tests/test_recipe_yaml.py tests/test_checkpoint.py
  tests/test_pipeline.py::test_demo_makes_a_valid_labelled_pack
  tests/test_pipeline.py::test_rerun_is_idempotent_and_changed_recipe_is_refused
  tests/test_pipeline.py::test_prepare_reports_every_problem_with_its_fix
  tests/test_pipeline.py::test_prepare_warnings
  tests/test_loading.py::test_cache_is_used_and_never_stale
  tests/test_cli_encode.py::test_encode_resamples_and_mixes_down
  tests/test_pads_unchanged.py tests/test_grid.py tests/test_tui.py
)
start=$SECONDS
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0
python3 ci/floors.py --extra-packages "$TEST_PACKAGES" --skip torch >"$VENV/floors.txt"
if command -v uv >/dev/null && [ "${ONSS_LOWEST_PIP:-0}" != 1 ]; then
  mapfile -t requirements < <(python3 ci/floors.py --requirements --extra-packages "$TEST_PACKAGES" --skip torch)
  # torch: the installed CPU build (uv looks in no find-links of pip's, and would take a CUDA 2.4 otherwise)
  torch_pin=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')
  links=() && [ -d /opt/wheels ] && links=(--find-links /opt/wheels)  # (where this machine keeps torch's file)
  uv pip install -q --python "$VENV/bin/python" --resolution lowest-direct --constraint <(echo "torch==$torch_pin") \
    "${links[@]}" -e . "${requirements[@]}"
  how="uv --resolution lowest-direct"
else
  mapfile -t packages < <(tr ',' '\n' <<<"$TEST_PACKAGES")
  "$VENV/bin/pip" install -q -c "$VENV/floors.txt" -e . "${packages[@]}"
  how="pip -c floors"
fi
# every floor is what is installed (1.26 is 1.26.0)
"$VENV/bin/python" - "$VENV/floors.txt" <<'EOF'
import sys
from importlib.metadata import version
from pip._vendor.packaging.requirements import Requirement

wrong, have = [], []
for line in open(sys.argv[1]):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    installed = version(req.name)
    have.append(f"{req.name} {installed}")
    if not req.specifier.contains(installed, prereleases=True):
        wrong.append(f"{req.name} {installed} (floor {req.specifier})")
print("lowest:", ", ".join(have))
sys.exit(f"ci/lowest.sh: not the floors: {', '.join(wrong)}" if wrong else 0)
EOF
echo "lowest: installed with $how in $((SECONDS - start)) s"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
echo "lowest: done in $((SECONDS - start)) s"
