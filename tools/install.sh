#!/usr/bin/env bash
# Create (or complete) the environment for wrs_mm in $1 (default .venv):
# torch (2.13.0 here, or the CUDA torch already installed), mmcv 2.1.0 with ops
# built once (for the visible GPU, if any: tools/build_mmcv.sh) and cached as a
# wheel, Triton, mmengine 0.10.7, mmdet 3.3.0,
# mmsegmentation 1.2.2, the test and lint tools (setup.py's extras mm and
# tests), and wrs_mm in editable mode.
set -euo pipefail
VENV=${1:-.venv}
CACHE=${WRS_MM_CACHE:-$HOME/.cache/wrs_mm}
cd "$(dirname "$0")/.."

if [ ! -x "$VENV/bin/python" ]; then
  if python3 -c 'import torch' 2>/dev/null; then
    # reuse the machine's (CUDA) torch
    python3 -m venv --system-site-packages "$VENV"
  else
    python3 -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP="$PY -m pip -q --disable-pip-version-check"
"$PY" -c 'import torch' 2>/dev/null || $PIP install torch==2.13.0
TORCH=$("$PY" -c 'import torch; print(torch.__version__)')
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$TORCH" > "$CONSTRAINTS"
# torch needs setuptools>=77.0.3; mmengine's mmdet::/mmseg::/wrs_mm:: lookup
# needs pkg_resources, which setuptools 81 removed; setuptools 80 turned
# `setup.py develop` into a PEP 660 install (see the editable install below).
echo "setuptools>=77.0.3,<80" >> "$CONSTRAINTS"
$PIP install -c "$CONSTRAINTS" setuptools wheel ninja numpy

if ! "$PY" -c 'import mmcv.ops' 2>/dev/null; then
  # one cached wheel per torch version and GPU architecture
  ARCH=$("$PY" -c 'import torch
print("-sm%d%d" % torch.cuda.get_device_capability()
      if torch.cuda.is_available() else "")')
  WHEELS="$CACHE/wheels/torch-$TORCH$ARCH"
  bash tools/build_mmcv.sh "$PY" "$WHEELS"
  $PIP install -c "$CONSTRAINTS" "$WHEELS"/mmcv-2.1.0-*.whl
fi
# Triton: the fused WRS / shifted-L2 kernels on CUDA (CUDA builds of torch
# ship it); on CPU its interpreter runs the kernel tests.
"$PY" -c 'import triton' 2>/dev/null || $PIP install triton==3.6.0
# the rest from setup.py's extras: mm (mmengine, mmdet, mmseg, ...), tests
# (pytest, the benchmarks' and linters' packages), docs (Sphinx, MyST);
# wrs_mm editable, as a
# `setup.py develop` link (--no-use-pep517): mmengine finds `wrs_mm::` configs
# under the distribution's location, which is the checkout only then (a
# PEP 660 editable install puts it in site-packages, where no wrs_mm/.mim is)
$PIP install -c "$CONSTRAINTS" --no-build-isolation --no-use-pep517 \
  -e ".[mm,tests,docs]"
"$PY" -c 'import mmcv.ops, mmdet, mmseg, wrs_mm; print("wrs_mm environment ready:", mmcv.__version__, mmdet.__version__, mmseg.__version__)'
