"""Batch jobs for ``tools/slurm_train.sh``: the job script, its ``sbatch``
submission, and the state of submitted jobs (``squeue``, ``scontrol``) as
:class:`SlurmJob` records.

A run is one job. Its script asks for the resources ``slurm_train.sh`` will
ask for (:func:`slurm_resources`, read from the same variables: ``GPUS``,
``GPUS_PER_NODE``, ``TASKS_PER_NODE``, ``CPUS_PER_TASK``), then runs
``slurm_train.sh`` in the allocation: with ``--resume`` when the work dir
holds a checkpoint (a cancelled, failed or timed-out run resumes from its last
one), and on success writes the run's done file. The job outlives the shell
that submitted it.

With a signal time (``--signal-time``, default 120 s) the job is submitted
with ``--requeue`` and ``--signal=B:USR1@<seconds>``: before its time limit
Slurm sends ``SIGUSR1`` to the batch shell, which passes it to the training
tasks (``scancel --signal=USR1``); their ``CheckpointOnSignalHook``
(``ON_SIGNAL=requeue``) saves ``iter_<n>.pth`` and requeues the job, which
starts again and resumes from it. On ``SIGTERM`` (a preemption, ``scancel``)
they save and stop: a partition that preempts by requeueing puts the job back
itself, and the next call of the study resubmits a stopped run, resumed.
"""
import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from ...core.preemption import slurm_job

#: the file mmengine writes in a work dir, naming its latest checkpoint
CHECKPOINT_POINTER = 'last_checkpoint'


@dataclass(frozen=True)
class SlurmJob:
    """A submitted job as Slurm reports it: ``state``, Slurm's own name
    (``PENDING``, ``RUNNING``, ``CANCELLED``, ``TIMEOUT`` ...), and how many
    times it was requeued (``restarts``; ``scontrol``'s ``Restarts``)."""
    state: str
    restarts: int = 0


def slurm_resources(gpus: int, environ: Mapping[str, str]) -> dict:
    """What ``tools/slurm_train.sh`` asks for, for ``gpus`` tasks:
    ``GPUS_PER_NODE`` (default 8) GPUs per node, as many tasks per node; with
    ``GPUS_PER_NODE=0`` no GPU and ``TASKS_PER_NODE`` tasks per node (default
    ``gpus``); ``CPUS_PER_TASK`` CPUs per task (default 5). Per-node counts
    are capped at ``gpus``. Returns the variables to run the script with."""
    try:
        per_node = int(environ.get('GPUS_PER_NODE', 8))
        cpus = int(environ.get('CPUS_PER_TASK', 5))
        tasks = int(environ.get('TASKS_PER_NODE', per_node or gpus))
    except ValueError as e:
        raise ValueError('paired study (slurm): GPUS_PER_NODE, '
                         'TASKS_PER_NODE and CPUS_PER_TASK must be integers; '
                         f'{e}') from None
    if gpus < 1 or per_node < 0 or cpus < 1 or tasks < 1:
        raise ValueError('paired study (slurm): need --gpus >= 1, '
                         'GPUS_PER_NODE >= 0, TASKS_PER_NODE >= 1 and '
                         f'CPUS_PER_TASK >= 1; got {gpus}, {per_node}, '
                         f'{tasks}, {cpus}')
    return dict(
        GPUS=str(gpus),
        GPUS_PER_NODE=str(min(per_node, gpus)),
        TASKS_PER_NODE=str(min(tasks, gpus)),
        CPUS_PER_TASK=str(cpus))


def job_script(command: Sequence[str],
               name: str,
               partition: str,
               resources: Mapping[str, str],
               log: str,
               done_file: str,
               work_dir: str,
               signal_time: int = 0) -> str:
    """The ``sbatch`` script of one run. ``command`` is the run's
    ``slurm_train.sh`` command line; ``--resume`` is put before its
    ``--cfg-options`` when ``work_dir`` holds a checkpoint at the job's
    start. ``signal_time`` > 0: requeued on ``SIGUSR1`` that many seconds
    before the time limit, or on ``SIGTERM`` (module docstring)."""
    cut = command.index('--cfg-options')
    per_node = int(resources['GPUS_PER_NODE'])
    pointer = shlex.quote(os.path.join(work_dir, CHECKPOINT_POINTER))
    lines = [
        '#!/usr/bin/env bash', f'#SBATCH --job-name={name}',
        f'#SBATCH --partition={partition}',
        f"#SBATCH --ntasks={resources['GPUS']}",
        f"#SBATCH --ntasks-per-node={resources['TASKS_PER_NODE']}",
        f"#SBATCH --cpus-per-task={resources['CPUS_PER_TASK']}",
        f'#SBATCH --output={log}', '#SBATCH --open-mode=append'
    ]
    if per_node:
        lines.append(f'#SBATCH --gres=gpu:{per_node}')
    train = f'{shlex.join(command[:cut])} $RESUME {shlex.join(command[cut:])}'
    if signal_time:
        lines += [
            '#SBATCH --requeue', f'#SBATCH --signal=B:USR1@{signal_time}',
            'export ON_SIGNAL=requeue'
        ]
    lines += [
        *(f'export {k}={v}' for k, v in resources.items()),
        f'if [ -f {pointer} ]; then RESUME=--resume; else RESUME=; fi',
        'echo "paired study: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST '
        '${RESUME:+(resumed)}'
        '${SLURM_RESTART_COUNT:+ restart $SLURM_RESTART_COUNT}"',
        'START=$SECONDS',
    ]
    if signal_time:
        lines += [
            # B:USR1 reaches this shell only: pass it to the training tasks
            'trap \'scancel --signal=USR1 "$SLURM_JOB_ID"\' USR1',
            f'{train} &',
            'PID=$!',
            # wait returns early for the trapped signal: wait again
            'while :; do wait $PID; RC=$?; '
            '[ $RC -gt 128 ] && kill -0 $PID 2>/dev/null || break; done',
        ]
    else:
        lines += [train, 'RC=$?']
    lines += [
        '[ $RC -ne 0 ] && exit $RC',
        'printf \'{"command": %s, "seconds": %d, "job_id": "%s", '
        '"restarts": %d}\\n\' ' + shlex.quote(json.dumps(list(command))) +
        ' $((SECONDS - START)) "$SLURM_JOB_ID" "${SLURM_RESTART_COUNT:-0}" > '
        + shlex.quote(done_file)
    ]
    return '\n'.join(lines) + '\n'


def sbatch(script: str, env: Optional[dict] = None) -> str:
    """Submit ``script`` (a file); the job id."""
    res = subprocess.run(['sbatch', '--parsable', script],
                         capture_output=True,
                         text=True,
                         env=env)
    if res.returncode:
        raise RuntimeError(f'sbatch {script} failed: {res.stderr.strip()}')
    return res.stdout.strip().split(';')[0]


def queued_jobs(env: Optional[dict] = None) -> Dict[str, SlurmJob]:
    """``{job id: SlurmJob}`` of the jobs in the queue (``squeue``)."""
    res = subprocess.run(['squeue', '-h', '-o', '%i %T'],
                         capture_output=True,
                         text=True,
                         env=env)
    if res.returncode:
        raise RuntimeError(f'squeue failed: {res.stderr.strip()}')
    out = {}
    for line in res.stdout.splitlines():
        job, state = line.split()
        out[job] = SlurmJob(state)
    return out


def job_state(job: str, env: Optional[dict] = None) -> Optional[SlurmJob]:
    """The job as the controller remembers it (``scontrol show job``: for a
    job that left the queue, how it ended); None once it forgot it."""
    fields = slurm_job(job, env)
    if 'JobState' not in fields:
        return None
    return SlurmJob(fields['JobState'], int(fields.get('Restarts', 0)))


def cancel(jobs: List[str], env: Optional[dict] = None) -> None:
    """``scancel`` ``jobs``, if any."""
    if jobs:
        subprocess.run(['scancel', *jobs], check=True, env=env)
