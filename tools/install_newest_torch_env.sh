#!/usr/bin/env bash
# The newest-torch environment: the newest torch release on PyPI (TORCH
# below: its CUDA build, which runs on a CPU-only machine), numpy and
# mmengine 0.10.7, built once and cached, so that wrs_mm's wheel is installed
# into it and the core's and the mmengine adapters' tests run there
# (tests/test_newest_torch.py). Prints the environment's python on its last
# line.
#
# No mmcv, mmdet or mmseg: mmcv 2.1.0 does not build against torch 2.15 (its
# setup.py compiles with -std=c++17, and torch 2.15's headers stop with
# "#error C++20 or later compatible compiler is required to use ATen").
#
# To move to the next torch release: change TORCH, run this script, then
# `pytest tests/test_newest_torch.py` (docs/en/design.md, "The newest torch").
#
# Cached as tools/install_user_env.sh caches its environment: in
# $WRS_MM_CACHE (default ~/.cache/wrs_mm) under newest-torch/, reused while
# the stamp file holds this specification; the tests install into a
# hard-linked copy. pytest goes to test-tools/, outside site-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${WRS_MM_CACHE:-$HOME/.cache/wrs_mm}
TORCH=2.15.0
SPEC="torch==$TORCH numpy setuptools>=77.0.3,<80 mmengine==0.10.7 |
pytest==8.3.5 pytest-xdist==3.6.1"
VENV=${WRS_MM_NEWEST_TORCH_ENV:-$CACHE/newest-torch/torch-$TORCH}
STAMP="$VENV/wrs_mm_newest_torch_env.spec"
source tools/cached_venv.sh
cached_venv_lock "$VENV"
cached_venv_reuse "$VENV" "$STAMP" "$SPEC" 'torch, numpy, mmengine'
start=$(date +%s)
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP="$PY -m pip -q --disable-pip-version-check"
CONSTRAINTS="$VENV/constraints.txt"
# torch 2.15 needs setuptools >= 77.0.3; mmengine's pkg:: config lookup
# needs pkg_resources, which setuptools 80 deprecates and 81 removes
printf '%s\n' "torch==$TORCH" 'setuptools>=77.0.3,<80' >"$CONSTRAINTS"
# The environment variable replaces a constraints file of pip's own
# configuration: a machine-wide cap on torch (these machines cap it at the
# releases on their disk) must not decide which torch is tested here.
export PIP_CONSTRAINT="$CONSTRAINTS"
$PIP install torch numpy setuptools
$PIP install mmengine==0.10.7
$PIP install --target "$VENV/test-tools" --no-deps pytest==8.3.5 \
  pytest-xdist==3.6.1 execnet==2.1.1 pluggy==1.5.0 iniconfig==2.0.0
"$PY" -c 'import torch, numpy, mmengine, setuptools
print("newest-torch environment:", "torch", torch.__version__, "numpy",
      numpy.__version__, "mmengine", mmengine.__version__, "setuptools",
      setuptools.__version__)' >&2
echo "$SPEC" >"$STAMP"
echo "made in $(($(date +%s) - start)) s" >&2
echo "$PY"
