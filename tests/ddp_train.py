"""Worker for the 2-process DDP test: ``torchrun --nproc_per_node=2
ddp_train.py
OUT``. Trains the toy model with WRS and saves parameters per rank."""
import os
import sys

import torch
from mmengine.config import Config

from wrs_mm.apis import build_runner
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.testing import get_hook
import toy

out = sys.argv[1]
cfg = toy.runner_cfg(
    out,
    6,
    hook=dict(type='WeightRescaleHook', interval=2),
    launcher='pytorch',
    env_cfg=dict(dist_cfg=dict(backend='gloo')),
    model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None))
runner = build_runner(Config(cfg))  # gloo: the test pins it to CPU
runner.train()
model = runner.model.module
hook = get_hook(runner, WeightRescaleHook)
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
        rescales=hook.num_rescales),
    os.path.join(out, f'params_rank{runner.rank}.pt'))
