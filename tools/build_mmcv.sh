#!/usr/bin/env bash
# Build mmcv 2.1.0 with its ops as a wheel into $2 for the Python $1, against
# the torch installed there; skipped when such a wheel is already in $2.
# With a visible CUDA GPU it builds the CUDA ops for that GPU only:
# FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST=<its compute capability> (set either
# yourself to override, e.g. TORCH_CUDA_ARCH_LIST="8.0;9.0" for a cluster).
# MAX_JOBS defaults to the number of cores. Without debug information (-g0
# after Python's -g): on 2 cores one op file compiled in 23 s against 50 s
# with it, and the library is a tenth of the size (74 MB with -g). Measured
# with -g: 11 min on 2 CPU cores (CPU ops); 297 s on 16 cores for one H100
# (TORCH_CUDA_ARCH_LIST=9.0).
set -euo pipefail
PY=$1
WHEELS=$2
if ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
  exit 0
fi
ARCH=$("$PY" -c 'import torch
if torch.cuda.is_available():
    print("%d.%d" % torch.cuda.get_device_capability())')
if [ -n "$ARCH" ]; then
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH}
  echo "building mmcv 2.1.0 with CUDA ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
fi
export MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS="${CFLAGS:-} -g0"
echo "building mmcv 2.1.0 with ops (MAX_JOBS=$MAX_JOBS; about 11 minutes on 2 cores) into $WHEELS"
mkdir -p "$WHEELS"
start=$(date +%s)
# --no-cache-dir: pip's own wheel cache would hand back a wheel built earlier
# against another torch (the main environment's), whose ops do not load here
"$PY" -m pip -q --disable-pip-version-check wheel --no-build-isolation \
  --no-deps --no-cache-dir -w "$WHEELS" mmcv==2.1.0
echo "mmcv built in $(( $(date +%s) - start )) s"
