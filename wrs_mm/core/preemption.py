"""Stop a training run at an iteration's end when the scheduler warns it,
so that it can be resumed there: the framework-free parts of
``CheckpointOnSignalHook``.

A cluster kills a job at its time limit or when a higher-priority job
preempts it. Slurm can warn it first: ``sbatch --signal=B:USR1@120`` sends
``SIGUSR1`` 120 s before the limit (``B:`` to the batch shell, which the
paired study's job script forwards to the tasks), and it sends ``SIGTERM``
on preemption, on ``scancel`` and at the limit. :class:`SignalCatcher`
records the signal; :func:`agree_on_signal` makes every rank of a
distributed run agree, at the same iteration, whether any rank got one (a
signal may reach the ranks at different iterations, or one rank only);
:func:`requeue_slurm_job` puts the batch job back in the queue (``scontrol
requeue``), where it starts again with its job id and resumes from the
checkpoint.

:func:`slurm_job` reads a job's record (``scontrol -o show job``) for the
paired study's state table (``JobState``, ``Restarts``).
"""
import os
import signal
import subprocess
from typing import Dict, Iterable, Mapping, Optional

import torch
import torch.distributed as dist

#: the exit status of a run stopped by a signal after saving its checkpoint:
#: sysexits.h's ``EX_TEMPFAIL``, not done and resumable
PREEMPTED_EXIT = 75

#: the signals a run can be told to stop on
STOP_SIGNALS = ('SIGUSR1', 'SIGUSR2', 'SIGTERM', 'SIGINT')


def parse_signals(names: Iterable[str], key: str = 'signals') -> tuple:
    """``signal.Signals`` for names in :data:`STOP_SIGNALS`; ``ValueError``
    naming ``key`` otherwise."""
    names = (names, ) if isinstance(names, str) else tuple(names)
    bad = [n for n in names if n not in STOP_SIGNALS]
    if bad or not names:
        raise ValueError(f'{key}={list(names)!r}: give one or more of '
                         f'{list(STOP_SIGNALS)}')
    return tuple(signal.Signals[n] for n in names)


class SignalCatcher:
    """Records the first of ``signals`` this process receives, from
    :meth:`install` (in the main thread) to :meth:`remove`, which restores
    the handlers that were there. The handler only records: the run stops
    where it is safe to, at its iteration's end."""

    def __init__(self, signals: tuple):
        self.signals = signals
        self.received: Optional[signal.Signals] = None
        self._previous: Dict[signal.Signals, object] = {}

    def install(self) -> None:
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._record)

    def _record(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def remove(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def agree_on_signal(
        received: Optional[signal.Signals]) -> Optional[signal.Signals]:
    """The signal every rank stops on: the largest signal number received on
    any rank (one ``all_reduce(MAX)`` of an integer when more than one rank
    runs), or None when no rank received one. Every rank must call it at the
    same point of each iteration."""
    value = int(received or 0)
    if dist.is_available() and dist.is_initialized() \
            and dist.get_world_size() > 1:
        device = torch.device('cuda', torch.cuda.current_device()) \
            if dist.get_backend() == 'nccl' else torch.device('cpu')
        flag = torch.tensor([value], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        value = int(flag.item())
    return signal.Signals(value) if value else None


def slurm_job_id(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The id of the Slurm job this process runs in (``SLURM_JOB_ID``), or
    None outside one."""
    return environ.get('SLURM_JOB_ID') or None


def requeue_slurm_job(job: str) -> None:
    """Put batch job ``job`` back in the queue (``scontrol requeue``): Slurm
    ends its processes and starts it again later, with the same id and
    script. ``RuntimeError`` with scontrol's message if it refuses (an
    interactive ``srun`` job, or a cluster with ``JobRequeue=0`` and a job
    submitted without ``--requeue``)."""
    res = subprocess.run(['scontrol', 'requeue', job],
                         capture_output=True,
                         text=True)
    if res.returncode:
        raise RuntimeError(f'scontrol requeue {job} failed: '
                           f'{(res.stderr or res.stdout).strip()}')


def slurm_job(job: str,
              env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The fields of ``scontrol -o show job JOB`` (``JobState``,
    ``Restarts``, ``ExitCode`` ...), or ``{}`` once the controller has
    forgotten the job."""
    res = subprocess.run(['scontrol', '-o', 'show', 'job', job],
                         capture_output=True,
                         text=True,
                         env=env)
    fields = {}
    if res.returncode == 0:
        for item in res.stdout.split():
            key, sep, value = item.partition('=')
            if sep and key not in fields:
                fields[key] = value
    return fields
