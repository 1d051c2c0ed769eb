"""Worker for the FlexibleRunner tests: ``torchrun --nproc_per_node=N
flexible_train.py OUT STRATEGY``, on CPU / gloo. Trains the toy model with
WRS, the eps-shifted L2 and NormDynamicsHook under mmengine's FlexibleRunner
and the given strategy; saves each rank's parameters, or the error that
stopped training and the iterations done before it."""
import json
import os
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import RUNNERS

from wrs_mm.apis import close_distributed
from wrs_mm.engine import NormDynamicsHook, WeightRescaleHook
from wrs_mm.testing import get_hook
import toy

out, variant = sys.argv[1], sys.argv[2]
strategy = variant.split('_')[0]
WRS = dict(type='WeightRescaleHook', interval=2, exclude=r'conv2')
NORM = dict(type='NormDynamicsHook', interval=1)
# fsdp_hook: WRS alone, fsdp_norm: the norm probe alone (the hook refuses)
hooks = dict(fsdp_hook=[WRS], fsdp_norm=[NORM]).get(variant, [WRS, NORM])
hook_only = variant in ('fsdp_hook', 'fsdp_norm')
dist.init_process_group(backend='gloo')
STRATEGIES = dict(
    ddp=dict(
        type='DDPStrategy',
        model_wrapper=dict(type='MMDistributedDataParallel', device_ids=None)),
    fsdp=dict(
        type='FSDPStrategy',
        model_wrapper=dict(
            type='MMFullyShardedDataParallel', device_id=torch.device('cpu'))))
optim = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
    constructor='WRSOptimWrapperConstructor',
    paramwise_cfg=dict(shifted_reg=dict(eps=0.5, include=r'conv2')))
if hook_only:
    optim.pop('paramwise_cfg')
cfg = toy.runner_cfg(
    out,
    6,
    custom_hooks=hooks,
    optim=optim,
    launcher='pytorch',
    runner_type='FlexibleRunner',
    strategy=STRATEGIES[strategy],
    env_cfg=dict(dist_cfg=dict(backend='gloo')))
rank = dist.get_rank()
runner = error = None
try:
    runner = RUNNERS.build(Config(cfg))
    runner.train()
except RuntimeError as e:
    error = dict(error=str(e), iter=runner.iter if runner else None)
if error is not None:
    with open(os.path.join(out, f'error_rank{rank}.json'), 'w') as f:
        json.dump(error, f)
else:
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
    del model
del runner
close_distributed()
