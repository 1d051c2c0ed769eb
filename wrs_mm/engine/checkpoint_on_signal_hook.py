"""``CheckpointOnSignalHook``: when the scheduler warns a run (Slurm's
``--signal``, a preemption's or a time limit's ``SIGTERM``), finish the
iteration, save a resumable ``iter_<n>.pth``, then requeue the Slurm job or
exit, and resume from that checkpoint bitwise as if never stopped.

Where it runs and what it changes:

* ``before_train``: installs handlers for ``signals``; they only record the
  signal (:class:`~wrs_mm.core.preemption.SignalCatcher`). ``after_train``
  puts the previous handlers back.
* ``after_train_iter`` (priority ``LOWEST``: after every other hook's work on
  the iteration, the param schedulers' and ``CheckpointHook``'s included):
  every rank asks whether any rank got a signal
  (:func:`~wrs_mm.core.preemption.agree_on_signal`, one ``all_reduce`` of an
  integer), so all stop at the same iteration. Then every rank's random
  generator states are gathered, rank 0 saves ``iter_<n>.pth`` with
  ``runner.save_checkpoint`` (every hook's state, WRS's too, and the
  generators under ``signal_stop``) and points ``last_checkpoint`` at it,
  requeues the job with ``on_signal='requeue'`` if the signal was the
  warning (``SIGUSR1`` / ``SIGUSR2``), and every rank leaves
  ``runner.train()`` by raising :class:`TrainingPreempted` (a
  ``SystemExit`` with status 75, ``EX_TEMPFAIL``: stopped, resumable).
* ``after_load_checkpoint`` and ``before_train_epoch`` of a run resumed from
  such a checkpoint: the checkpoint was saved inside an epoch, and mmengine's
  ``EpochBasedTrainLoop`` would start that epoch again from its first batch.
  The hook replaces the loop's ``run_iter`` (an instance attribute, removed
  again at once) so that the epoch's first ``n`` batches are drawn from the
  data loader but not trained on; ``IterBasedTrainLoop`` skips them itself.
  After the last skipped batch it restores the generators of the moment of
  the save, so the batches that follow are drawn and augmented as in the
  uninterrupted run. With ``num_workers=0`` or non-persistent workers the
  resumed run ends bitwise equal to an uninterrupted one (persistent workers
  restart their generators; mmengine's own resume does the same).
"""
import os.path as osp
from typing import Optional, Sequence, Union

from mmengine.dist import all_gather_object, barrier, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..core.preemption import (PREEMPTED_EXIT, SignalCatcher, agree_on_signal,
                               parse_signals, requeue_slurm_job, slurm_job_id)
from ..core.rng import get_rng_states, set_rng_states

#: the checkpoint key of the generator states (one per rank)
STATE_KEY = 'signal_stop'

ON_SIGNAL = ('exit', 'requeue')

#: the signals after which ``on_signal='requeue'`` requeues the job: a
#: scheduler's warning, not a cancel (``SIGTERM``, ``SIGINT``)
WARNINGS = ('SIGUSR1', 'SIGUSR2')


class TrainingPreempted(SystemExit):
    """Raised on every rank after the signal checkpoint is saved: the run
    stops with exit status :data:`~wrs_mm.core.preemption.PREEMPTED_EXIT`
    (75). ``tools/train.py`` catches it to free the process group first."""

    def __init__(self):
        super().__init__(PREEMPTED_EXIT)


@HOOKS.register_module()
class CheckpointOnSignalHook(Hook):
    """Checkpoint at the end of the iteration in which the run got one of
    ``signals``, then requeue the Slurm job or exit (status 75).

    Args:
        on_signal (str): ``'exit'`` (stop; whoever launched the run starts it
            again with ``--resume``) or ``'requeue'``: after a warning
            signal (``SIGUSR1`` / ``SIGUSR2``, Slurm's ``--signal``),
            ``scontrol requeue`` the Slurm batch job this run is part of,
            which then starts again and resumes (its command needs
            ``--resume``, as the paired study's job scripts have). After
            ``SIGTERM`` / ``SIGINT`` it only exits: ``scancel`` means
            cancel, and a partition that preempts by requeueing requeues
            the job itself. Defaults to ``'exit'``.
        signals (Sequence[str]): signal names to stop on. Defaults to
            ``('SIGUSR1', 'SIGTERM')``: Slurm's warning (``--signal``) and
            its preemption / time-limit signal.
    """

    priority = 'LOWEST'

    def __init__(self,
                 on_signal: str = 'exit',
                 signals: Union[str, Sequence[str]] = ('SIGUSR1', 'SIGTERM')):
        if on_signal not in ON_SIGNAL:
            raise ValueError(f'CheckpointOnSignalHook: on_signal='
                             f'{on_signal!r}; accepted: {list(ON_SIGNAL)}')
        self.on_signal = on_signal
        self._catcher = SignalCatcher(
            parse_signals(signals, 'CheckpointOnSignalHook signals'))
        self._states: Optional[list] = None  # to save, then as loaded

    def before_train(self, runner) -> None:
        """Install the signal handlers; refuse ``'requeue'`` outside a Slurm
        job."""
        if self.on_signal == 'requeue' and slurm_job_id() is None:
            raise RuntimeError(
                "CheckpointOnSignalHook: on_signal='requeue' needs a Slurm "
                'batch job (SLURM_JOB_ID is not set); use '
                "on_signal='exit' elsewhere")
        self._catcher.install()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Every rank: stop here if any rank received a signal."""
        signum = agree_on_signal(self._catcher.received)
        if signum is not None:
            self._stop(runner, signum.name)

    def after_train(self, runner) -> None:
        """Put back the signal handlers that were there before."""
        self._catcher.remove()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add every rank's generator states to the signal checkpoint."""
        if self._states is not None:
            checkpoint[STATE_KEY] = dict(rng=self._states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the generator states of a signal checkpoint being resumed
        from, for :meth:`before_train_epoch`."""
        state = checkpoint.get(STATE_KEY)
        if state is None or not runner._resume:
            return
        if len(state['rng']) != get_world_size():
            print_log(
                'CheckpointOnSignalHook: the checkpoint was saved by '
                f"{len(state['rng'])} processes and {get_world_size()} "
                'resume it: its random generator states are not restored, '
                'so the run does not continue exactly as it would have',
                logger='current',
                level=30)
            return
        self._states = state['rng']

    def before_train_epoch(self, runner) -> None:
        """In a run resumed from a signal checkpoint: skip the batches of
        the epoch that were trained on, then restore the generators."""
        if self._states is None or not runner.train_loop.iter:
            self._states = None
            return
        states, self._states = self._states[get_rank()], None
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            done = loop.iter - loop.epoch * len(loop.dataloader)
            if done > 0:
                _skip_batches(loop, done, states)
            else:
                set_rng_states(states)
        elif isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreAfter(loop, loop.iter, states)
        print_log(
            'CheckpointOnSignalHook: resumed from a signal checkpoint at '
            f'iteration {loop.iter}; the random generators continue from '
            'its save',
            logger='current')

    def _stop(self, runner, signal_name: str) -> None:
        """Save ``iter_<n>.pth`` (all ranks take part), point
        ``last_checkpoint`` at it, requeue or not, and raise
        :class:`TrainingPreempted`."""
        self._states = all_gather_object(get_rng_states())
        name = f'iter_{runner.iter + 1}.pth'
        runner.save_checkpoint(runner.work_dir, name, by_epoch=False)
        self._states = None
        path = osp.join(runner.work_dir, name)
        if get_rank() == 0:
            with open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                f.write(path)
        then = 'exiting'
        if self.on_signal == 'requeue' and signal_name in WARNINGS \
                and get_rank() == 0:
            job = slurm_job_id()
            try:
                requeue_slurm_job(job)
                then = f'job {job} requeued; exiting'
            except RuntimeError as e:
                print_log(
                    f'CheckpointOnSignalHook: {e}; the run stops without '
                    'being requeued: resubmit it with --resume',
                    logger='current',
                    level=40)
        print_log(
            f'CheckpointOnSignalHook: {signal_name} (on some rank): saved '
            f'{path} at epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1}; {then} with status {PREEMPTED_EXIT}',
            logger='current')
        barrier()
        self._catcher.remove()
        raise TrainingPreempted()


def _skip_batches(loop: EpochBasedTrainLoop, done: int, states) -> None:
    """The loop's next ``done`` batches are drawn but not trained on; after
    the last one the generators are set to ``states`` and the loop's own
    ``run_iter`` is back."""
    previous = loop.__dict__.get('run_iter')

    def skip(idx, data_batch) -> None:
        if idx + 1 < done:
            return
        if previous is None:
            del loop.run_iter
        else:
            loop.run_iter = previous
        set_rng_states(states)

    loop.run_iter = skip


class _RestoreAfter:
    """``IterBasedTrainLoop``'s data iterator while the loop advances past
    the ``done`` batches trained on: after the last of them, the generators
    are set to ``states`` and the loop's iterator is the original again."""

    def __init__(self, loop: IterBasedTrainLoop, done: int, states):
        self.loop, self.left, self.states = loop, done, states
        self.inner = loop.dataloader_iterator

    def __next__(self):
        batch = next(self.inner)
        self.left -= 1
        if self.left == 0:
            self.loop.dataloader_iterator = self.inner
            set_rng_states(self.states)
        return batch
