#!/usr/bin/env bash
# The reference user environment: what an mmdet 3.3 user already has, built
# once and cached, so that wrs_mm is installed into it and tested there
# (tests/test_user_env.py). Prints the environment's python on its last line.
#
#   torch 2.1.2 + torchvision 0.16.2, numpy < 2 (torch 2.1 is built for 1.x),
#   mmcv 2.1.0 with its ops built against that torch (tools/build_mmcv.sh,
#   cached as a wheel), mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2
#   (with ftfy and regex, which its models import), mmpretrain 1.2.0.
#
# The venv lives in $WRS_MM_CACHE (default ~/.cache/wrs_mm) under
# user-env/, next to the mmcv wheels; it is reused while the stamp file says
# it was made from this script's specification, else made again. It stays as
# made: the tests install wrs_mm's wheel into a hard-linked copy of it (one
# per test run, so that runs sharing the cache cannot undo each other's
# installs), and a wrs_mm found here is removed. The script holds a lock
# ($VENV.lock) while it checks or builds, so concurrent runs wait for one
# build.
# pytest goes to a folder of its own (test-tools/, on PYTHONPATH only when the
# tests run), so the environment holds only what such a user has.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${WRS_MM_CACHE:-$HOME/.cache/wrs_mm}
SPEC="torch==2.1.2 torchvision==0.16.2 numpy<2 opencv-python<4.11
mmcv==2.1.0(ops) mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2
mmpretrain==1.2.0 ftfy regex | pytest==8.3.5 pytest-xdist==3.6.1"
VENV=${WRS_MM_USER_ENV:-$CACHE/user-env/torch-2.1.2}
STAMP="$VENV/wrs_mm_user_env.spec"
source tools/cached_venv.sh
cached_venv_lock "$VENV"
cached_venv_reuse "$VENV" "$STAMP" "$SPEC" 'mmcv.ops, mmdet, mmseg, mmpretrain'
start=$(date +%s)
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP="$PY -m pip -q --disable-pip-version-check"
CONSTRAINTS="$VENV/constraints.txt"
# opencv-python 4.11 and newer need numpy 2, with which torch 2.1 fails
printf '%s\n' torch==2.1.2 torchvision==0.16.2 'numpy<2' \
  'opencv-python<4.11' 'opencv-python-headless<4.11' >"$CONSTRAINTS"
$PIP install -c "$CONSTRAINTS" torch torchvision numpy
# the build tools mmcv's source build needs (its install docs: ninja, wheel)
$PIP install -c "$CONSTRAINTS" wheel ninja
WHEELS="$CACHE/wheels/torch-2.1.2"
bash tools/build_mmcv.sh "$PY" "$WHEELS" >&2
$PIP install -c "$CONSTRAINTS" "$WHEELS"/mmcv-2.1.0-*.whl
$PIP install -c "$CONSTRAINTS" mmengine==0.10.7 mmdet==3.3.0 \
  mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex
# the test runner, outside the environment's site-packages
$PIP install --target "$VENV/test-tools" --no-deps pytest==8.3.5 \
  pytest-xdist==3.6.1 execnet==2.1.1 pluggy==1.5.0 iniconfig==2.0.0
"$PY" -c 'import torch, torchvision, numpy, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain
print("reference user environment:", "torch", torch.__version__,
      "torchvision", torchvision.__version__, "numpy", numpy.__version__,
      "mmcv", mmcv.__version__, "mmengine", mmengine.__version__,
      "mmdet", mmdet.__version__, "mmseg", mmseg.__version__,
      "mmpretrain", mmpretrain.__version__)' >&2
echo "$SPEC" >"$STAMP"
echo "made in $(($(date +%s) - start)) s" >&2
echo "$PY"
