"""Worker for the FlexibleRunner tests: ``torchrun --nproc_per_node=N
flexible_train.py OUT VARIANT [VARIANT ...]``, on CPU / gloo. For each
variant (its strategy, and the plugin parts it uses), trains the toy model
under mmengine's FlexibleRunner in ``OUT/<variant>``; saves each rank's
parameters there, or the error that stopped training and the iterations done
before it. The FSDP variants are refused before their first step, so one
process tries them all."""
import json
import os
import sys

import per_param  # noqa: F401
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import RUNNERS

from wrs_mm.apis import close_distributed
from wrs_mm.engine import NormDynamicsHook, WeightRescaleHook
from wrs_mm.testing import get_hook
import toy

WRS = dict(type='WeightRescaleHook', interval=2, exclude=r'conv2')
NORM = dict(type='NormDynamicsHook', interval=1)
STRATEGIES = dict(
    ddp=dict(
        type='DDPStrategy',
        model_wrapper=dict(type='MMDistributedDataParallel', device_ids=None)),
    fsdp=dict(
        type='FSDPStrategy',
        model_wrapper=dict(
            type='MMFullyShardedDataParallel', device_id=torch.device('cpu'))))


def variant_cfg(out: str, variant: str) -> dict:
    """ddp / fsdp: WRS, the shifted L2 and the norm probe; ddp_per_param: the
    same as ddp with one param group per parameter; fsdp_hook: WRS alone,
    fsdp_norm: the norm probe alone (the hook refuses)."""
    hooks = dict(fsdp_hook=[WRS], fsdp_norm=[NORM]).get(variant, [WRS, NORM])
    optim = dict(
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
        constructor='PerParamWRSConstructor'
        if variant == 'ddp_per_param' else 'WRSOptimWrapperConstructor')
    if variant not in ('fsdp_hook', 'fsdp_norm'):
        optim['paramwise_cfg'] = dict(
            shifted_reg=dict(eps=0.5, include=r'conv2'))
    return toy.runner_cfg(
        out,
        6,
        custom_hooks=hooks,
        optim=optim,
        launcher='pytorch',
        runner_type='FlexibleRunner',
        strategy=STRATEGIES[variant.split('_')[0]],
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        experiment_name=variant)


def run(out: str, variant: str, rank: int) -> None:
    os.makedirs(out, exist_ok=True)
    runner = error = None
    try:
        runner = RUNNERS.build(Config(variant_cfg(out, variant)))
        runner.train()
    except RuntimeError as e:
        error = dict(error=str(e), iter=runner.iter if runner else None)
    if error is not None:
        with open(os.path.join(out, f'error_rank{rank}.json'), 'w') as f:
            json.dump(error, f)
        return
    model = runner.model.module
    torch.save(
        dict(
            params={
                k: v.detach()
                for k, v in model.named_parameters()
            },
            rescales=get_hook(runner, WeightRescaleHook).num_rescales,
            records=get_hook(runner, NormDynamicsHook).records),
        os.path.join(out, f'params_rank{rank}.pt'))


dist.init_process_group(backend='gloo')
for name in sys.argv[2:]:
    run(os.path.join(sys.argv[1], name), name, dist.get_rank())
close_distributed()
