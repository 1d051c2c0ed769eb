#!/usr/bin/env bash
# The Detectron2 test environment: what a Detectron2 user has, built once and
# cached, so that wrs_mm's wheel is installed into it and its adapter tested
# with Detectron2's own tools (tests/test_detectron2.py). Prints the
# environment's python on its last line.
#
#   the reference user environment (tools/install_user_env.sh: torch 2.1.2,
#   torchvision 0.16.2, numpy < 2), copied with hard links, without any
#   OpenMMLab package (mmcv, mmengine, mmdet, mmseg, mmpretrain: the adapter
#   needs none), plus Detectron2 built from third_party/ (CPU ops, about 90 s
#   on 2 cores) with what it pulls from PyPI (fvcore, iopath, omegaconf,
#   hydra-core, yacs, tensorboard, ...).
#
# The venv lives in $WRS_MM_CACHE (default ~/.cache/wrs_mm) under
# detectron2-env/, reused while its stamp says it was made from this
# specification; the tests install wrs_mm into hard-linked copies of it
# (run-*/), as for the user environment (tools/cached_venv.sh: the lock,
# the stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${WRS_MM_CACHE:-$HOME/.cache/wrs_mm}
SRC=third_party/detectron2-02b5c4e.tar.gz
SPEC="user-env torch-2.1.2 - mmcv mmengine mmdet mmsegmentation mmpretrain
+ detectron2 from $(sha256sum "$SRC" | cut -c1-16)"
VENV=${WRS_MM_D2_ENV:-$CACHE/detectron2-env/torch-2.1.2-d2-02b5c4e}
STAMP="$VENV/wrs_mm_d2_env.spec"
source tools/cached_venv.sh
cached_venv_lock "$VENV"
cached_venv_reuse "$VENV" "$STAMP" "$SPEC" 'detectron2._C, detectron2.model_zoo'
start=$(date +%s)
BASE=$(bash tools/install_user_env.sh | tail -n 1)
rm -rf "$VENV"
cp -al "$(dirname "$(dirname "$BASE")")" "$VENV"
rm -f "$VENV/wrs_mm_user_env.spec"
PY="$VENV/bin/python"
PIP="$PY -m pip -q --disable-pip-version-check"
# unlinks the copy's files only: the user environment stays as made
$PIP uninstall -y mmpretrain mmsegmentation mmdet mmengine mmcv
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
tar -xzf "$SRC" -C "$BUILD"
MAX_JOBS=2 $PIP install -c "$VENV/constraints.txt" --no-build-isolation \
  "$BUILD/detectron2"
"$PY" -c 'import torch, torchvision, detectron2, detectron2._C
print("Detectron2 environment:", "torch", torch.__version__, "torchvision",
      torchvision.__version__, "detectron2", detectron2.__version__)' >&2
echo "$SPEC" >"$STAMP"
echo "made in $(($(date +%s) - start)) s" >&2
echo "$PY"
