"""``RankStateHook``, for tests of multi-process launches through the tools
(``slurm_train.sh``, ``dist_train.sh``): at the end of training every rank
saves its model's parameters to ``<work_dir>/params_rank<rank>.pt``
(``{'params': {name: tensor}}``, as ``toy.load_identical_ranks`` reads). DDP
keeps parameters equal across ranks; BN running statistics are rank 0's after
each forward's broadcast, then updated by each rank's own batch, so buffers
are not compared. A config imports it with
``custom_imports = dict(imports=['wrs_mm', 'rank_state_hook'])`` and this
folder on ``PYTHONPATH``."""
import os.path as osp

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
