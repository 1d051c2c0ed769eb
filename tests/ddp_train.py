"""Worker for the 2-process DDP tests: ``torchrun --nproc_per_node=2
ddp_train.py OUT [shifted]``. Trains the toy model with WRS (or, with
``shifted``, the eps-shifted L2 and NormDynamicsHook, and again with one
param group per parameter in ``OUT/per_param``) and saves parameters per
rank."""
import os
import sys

import per_param  # noqa: F401
import torch
from mmengine.config import Config

from wrs_mm.apis import build_runner, close_distributed
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.testing import get_hook
import toy


def run(out: str, shifted: bool, constructor: str) -> None:
    cfg = toy.runner_cfg(
        out,
        6,
        hook=dict(type='NormDynamicsHook', interval=1) if shifted else dict(
            type='WeightRescaleHook', interval=2),
        optim=dict(
            optimizer=dict(
                type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
            constructor=constructor,
            paramwise_cfg=dict(shifted_reg=dict(
                eps=0.5))) if shifted else None,
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        model_wrapper_cfg=dict(
            type='MMDistributedDataParallel', device_ids=None))
    runner = build_runner(Config(cfg))  # gloo: the test pins it to CPU
    runner.train()
    model = runner.model.module
    hook = None if shifted else get_hook(runner, WeightRescaleHook)
    torch.save(
        dict(
            params={
                k: v.detach()
                for k, v in model.named_parameters()
            },
            buffers={
                k: v
                for k, v in model.named_buffers()
            },
            rescales=hook.num_rescales if hook else None,
            shifted_params=sum(
                len(g['params'])
                for g in runner.optim_wrapper.optimizer.param_groups
                if g.get('wrs_mm_role') == 'shifted_lp')),
        os.path.join(out, f'params_rank{runner.rank}.pt'))


shifted = sys.argv[2:] == ['shifted']  # the regularizer and the norm probe
run(sys.argv[1], shifted, 'WRSOptimWrapperConstructor')
if shifted:
    run(
        os.path.join(sys.argv[1], 'per_param'), shifted,
        'PerParamWRSConstructor')
close_distributed()
