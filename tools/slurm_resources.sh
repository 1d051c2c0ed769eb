# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: what srun asks for.
#
# GPUS tasks (default 8) with CPUS_PER_TASK CPUs each (default 5); on a GPU
# partition GPUS_PER_NODE GPUs and tasks per node (default 8, asked for with
# --gres); on a CPU partition GPUS_PER_NODE=0: no GPU asked for, and
# TASKS_PER_NODE tasks per node (default GPUS), which run on gloo.
# SRUN_ARGS: more srun options.
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
    GRES="--gres=gpu:${GPUS_PER_NODE}"
else
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS}
    GRES=""
fi
