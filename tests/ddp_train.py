"""Worker for the 2-process DDP test: ``torchrun --nproc_per_node=2 ddp_train.py
OUT``. Trains the toy model with WRS and saves parameters per rank."""
import os
import sys

import torch
from mmengine.runner import Runner

import toy
import wrs_mm  # noqa: F401
from wrs_mm.engine import WeightRescaleHook

if not torch.cuda.is_available():
    # mmengine 0.10.7's init_dist always calls torch.cuda.set_device; on a
    # CPU-only machine (gloo) there is no device to set
    torch.cuda.set_device = lambda device: None

out = sys.argv[1]
cfg = toy.runner_cfg(
    out, 6, hook=dict(type='WeightRescaleHook', interval=2),
    launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='gloo')),
    model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None))
runner = Runner.from_cfg(cfg)
runner.train()
model = runner.model.module
hook = next(h for h in runner.hooks if isinstance(h, WeightRescaleHook))
torch.save(dict(params={k: v.detach() for k, v in model.named_parameters()},
                buffers={k: v for k, v in model.named_buffers()},
                rescales=hook.num_rescales),
           os.path.join(out, f'params_rank{runner.rank}.pt'))
