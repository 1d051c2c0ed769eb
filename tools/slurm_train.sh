#!/usr/bin/env bash
# tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# Resources: tools/slurm_resources.sh (GPUS, GPUS_PER_NODE, TASKS_PER_NODE,
# CPUS_PER_TASK, SRUN_ARGS).
# Checkpoint on Slurm's warning signal (CheckpointOnSignalHook):
#   SIGNAL_TIME=S  run from a login node: Slurm sends SIGUSR1 S seconds
#                  before the time limit (srun --signal=USR1@S); the run
#                  saves iter_<n>.pth and exits (ON_SIGNAL=exit)
#   ON_SIGNAL=exit|requeue  what the run does on SIGUSR1 / SIGTERM after
#                  saving; requeue (scontrol requeue) needs a batch job, whose
#                  script asks for the signal (#SBATCH --signal=USR1@S) and
#                  passes --resume
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
PY_ARGS=${@:5}
source "$(dirname "$0")/slurm_resources.sh"
SIGNAL_ARGS=""
if [ -n "${SIGNAL_TIME:-}" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "slurm_train.sh: SIGNAL_TIME is for a run from a login node;" \
            "in a batch job put '#SBATCH --signal=USR1@${SIGNAL_TIME}' in" \
            "its script" >&2
        exit 2
    fi
    SIGNAL_ARGS="--signal=USR1@${SIGNAL_TIME}"
    ON_SIGNAL=${ON_SIGNAL:-exit}
fi
if [ -n "${ON_SIGNAL:-}" ]; then
    PY_ARGS="--on-signal=${ON_SIGNAL} ${PY_ARGS}"
fi

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    ${GRES} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${TASKS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SIGNAL_ARGS} \
    ${SRUN_ARGS} \
    python -u $(dirname "$0")/train.py ${CONFIG} --work-dir=${WORK_DIR} \
    --launcher="slurm" ${PY_ARGS}
