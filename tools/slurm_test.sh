#!/usr/bin/env bash
# tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
#
# GPUS tasks (default 8) with CPUS_PER_TASK CPUs each (default 5); on a GPU
# partition GPUS_PER_NODE GPUs and tasks per node (default 8, asked for with
# --gres); on a CPU partition GPUS_PER_NODE=0: no GPU asked for, and
# TASKS_PER_NODE tasks per node (default GPUS), which run on gloo.
# SRUN_ARGS: more srun options.
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
    GRES="--gres=gpu:${GPUS_PER_NODE}"
else
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS}
    GRES=""
fi

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    ${GRES} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${TASKS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u $(dirname "$0")/test.py ${CONFIG} ${CHECKPOINT} \
    --launcher="slurm" ${PY_ARGS}
