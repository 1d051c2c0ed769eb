"""``RankStateHook``, for tests of multi-process launches through the tools
(``slurm_train.sh``, ``dist_train.sh``): at the end of training every rank
saves its model's parameters to ``<work_dir>/params_rank<rank>.pt``
(``{'params': {name: tensor}}``, as ``toy.load_identical_ranks`` reads). DDP
keeps parameters equal across ranks; BN running statistics are rank 0's after
each forward's broadcast, then updated by each rank's own batch, so buffers
are not compared. A config imports it with
``custom_imports = dict(imports=['wrs_mm', 'rank_state_hook'])`` and this
folder on ``PYTHONPATH``.

``SignalAtIterHook`` delivers a stop signal in a chosen iteration, for the
tests of ``CheckpointOnSignalHook``."""
import os
import os.path as osp
import signal
import time

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankStateHook(Hook):

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        params = {k: v.detach().cpu() for k, v in model.named_parameters()}
        torch.save(
            dict(params=params),
            osp.join(runner.work_dir, f'params_rank{get_rank()}.pt'))


@HOOKS.register_module()
class SignalAtIterHook(Hook):
    """A signal arrives while iteration ``at`` (0-based) runs, on ``ranks``
    (None: every rank). ``mode='self'``: the rank sends itself ``signal``.
    ``mode='outside'``: the rank writes ``<work_dir>/at_iter_rank<r>`` and
    waits (at most ``timeout`` s) until ``CheckpointOnSignalHook`` has caught
    a signal sent from outside (``scancel --signal``), so the test knows the
    iteration it lands in. With ``only_in_slurm`` it does nothing outside a
    Slurm job (the same config trained locally for comparison)."""

    def __init__(self,
                 at: int,
                 mode: str = 'self',
                 ranks=None,
                 signal: str = 'SIGUSR1',
                 timeout: float = 600,
                 only_in_slurm: bool = False):
        self.at, self.mode, self.ranks = at, mode, ranks
        self.signal, self.timeout = signal, timeout
        self.active = not only_in_slurm or 'SLURM_JOB_ID' in os.environ

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if not self.active or runner.iter != self.at or (
                self.ranks is not None and get_rank() not in self.ranks):
            return
        if self.mode == 'self':
            os.kill(os.getpid(), getattr(signal, self.signal))
            return
        catcher = next(
            h for h in runner.hooks
            if type(h).__name__ == 'CheckpointOnSignalHook')._catcher
        open(osp.join(runner.work_dir, f'at_iter_rank{get_rank()}'),
             'w').close()
        deadline = time.time() + self.timeout
        while catcher.received is None and time.time() < deadline:
            time.sleep(0.1)
