"""What the optimizer step of a shipped config costs with wrs_mm's constructor
against mmengine's default constructor with the same ``paramwise_cfg``,
within one run.

PyTorch's ``foreach`` optimizers launch their multi-tensor ops once per
param group, so the count of ``aten::_foreach_*`` ops per
``optimizer.step()`` grows with the groups; on a GPU each op is one or more
kernel launches. ``WRSOptimWrapperConstructor`` merges the parameters of
equal settings and keeps a group per wrs_mm role
(:mod:`wrs_mm.engine.param_groups`). Both optimizers are built from the
config's own ``optim_wrapper`` (``foreach=True``) on its real model (random
init); wrs_mm's then takes the decay off the weights a run would: the
first-forward analysis of a synthetic batch chooses them with the config's
``WeightRescaleHook`` / ``shifted_reg`` ``include`` / ``exclude`` (the
hook's eps check aside: it refuses single weights, which moves no group).
Then, with the same random gradients: the ops of one step once the momentum
buffers exist (``torch.profiler``; on CUDA also the kernel launches), and
the steps timed alternating, medians. The optimizer step alone: the shifted
regularizer's own op, which runs before it, is measured by ``bench_wrs.py``.

    python benchmarks/bench_optimizer_step.py [--rounds 20]
        [--configs yolov3 ...] [--out bench.json]

Runs on the device mmengine picks (a GPU when there is one); the GPU report
(``make gpu-report``) runs it there.
"""
import argparse
import copy
import json
import os.path as osp
import sys

import torch
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from wrs_mm.apis import build_from_config, load_config
from wrs_mm.core import analyze_invariance
from wrs_mm.core.param_groups import (ROLE_SHIFTED, ROLE_WRS, claim_groups,
                                      group_index)
from wrs_mm.core.selection import compile_patterns, select
from wrs_mm.engine import WRSPlugin
from wrs_mm.engine.param_groups import MMENGINE_FIX
from wrs_mm.testing import repo_root
from wrs_mm.testing.bench_utils import alternate, count_ops

#: name -> (shipped config, the size of the analysis' synthetic batch; the
#: groups do not depend on it)
CONFIGS = {
    'yolov3':
    ('configs/yolov3/'
     'yolov3_d53-bn_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py', (256, 256)),
    'faster_rcnn_gn_ws':
    ('configs/faster_rcnn/'
     'faster-rcnn_r50_fpn_gn-ws-all_wrs-tau10_1x_coco.py', (256, 256)),
    'faster_rcnn_gn_ws_shifted':
    ('configs/faster_rcnn/'
     'faster-rcnn_r50_fpn_gn-ws-all_shifted-l2_1x_coco.py', (256, 256)),
    'cifar_vgg16_bn':
    ('configs/classification/'
     'vgg16-bn_sgdm-wrs-tau40_1xb100-200e_cifar10.py', (32, 32)),
}


def build_optimizer(cfg, model, constructor: str):
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    wrapper.pop('constructor', None)
    paramwise = dict(wrapper.pop('paramwise_cfg', None) or {})
    if constructor == 'DefaultOptimWrapperConstructor':
        paramwise.pop('shifted_reg', None)
    wrapper.optimizer['foreach'] = True
    return OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type=constructor,
            optim_wrapper_cfg=wrapper,
            paramwise_cfg=paramwise or None))(
                model)


def claims(cfg) -> list:
    """(role, owner, options) of the config's features, in the order a run
    claims their weights (the regularizer first)."""
    out = []
    shifted = (cfg.optim_wrapper.get('paramwise_cfg') or {}).get('shifted_reg')
    if shifted is not None:
        out.append((ROLE_SHIFTED, 'shifted_reg', shifted))
    out += [(ROLE_WRS, 'WeightRescaleHook', h)
            for h in cfg.get('custom_hooks') or ()
            if h['type'] == 'WeightRescaleHook']
    return out


def claim_like_a_run(cfg, model, loss, batch, optimizer) -> dict:
    """Move the weights the config's features would act on into their role
    groups; ``{role: weights}``."""
    report = analyze_invariance(model, lambda: loss(batch))
    params = dict(model.named_parameters())
    claimed = {}
    for role, owner, opts in claims(cfg):
        chosen = select(report, compile_patterns(opts.get('include'), owner),
                        compile_patterns(opts.get('exclude'), owner), owner,
                        opts.get('allow_non_invariant', False))
        claim_groups(optimizer, {v.name: params[v.name]
                                 for v in chosen}, role, owner, MMENGINE_FIX)
        claimed[role] = len(chosen)
    return claimed


def profile_step(optimizer) -> dict:
    """``aten::_foreach_*`` ops (and CUDA kernel launches) of one
    ``optimizer.step()`` once the state exists (the momentum buffers are made
    on the first step)."""
    optimizer.step()
    return count_ops(
        optimizer.step,
        cuda=any(p.is_cuda for g in optimizer.param_groups
                 for p in g['params']))


def measure(config: str, size, rounds: int) -> dict:
    cfg = load_config(
        osp.join(repo_root(), config), {'train_dataloader.batch_size': 1})
    model, batches, loss = build_from_config(
        cfg, pretrained=False, synthetic=size)
    optimizers = {
        name: build_optimizer(cfg, model, ctor)
        for name, ctor in (('mmengine_default',
                            'DefaultOptimWrapperConstructor'),
                           ('wrs_mm', 'WRSOptimWrapperConstructor'))
    }
    # the groups alone: the shifted regularizer's own op (bench_wrs.py) off
    WRSPlugin.of(optimizers['wrs_mm'], model).remove()
    optimizers = {name: w.optimizer for name, w in optimizers.items()}
    claimed = claim_like_a_run(cfg, model, loss, next(batches),
                               optimizers['wrs_mm'])
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(p)
    out = {}
    for name, o in optimizers.items():
        out[name] = dict(
            groups=len(o.param_groups),
            groups_with_params=sum(bool(g['params']) for g in o.param_groups),
            **profile_step(o))
    steps = {name: o.step for name, o in optimizers.items()}
    device = next(model.parameters()).device
    for name, t in alternate(steps, rounds, device, warmup=0).items():
        out[name]['step_ms'] = 1e3 * t['median']
    out['step_ratio'] = out['wrs_mm']['step_ms'] / \
        out['mmengine_default']['step_ms']
    out['optimizer'] = cfg.optim_wrapper.optimizer.type
    out['params'] = len(group_index(optimizers['wrs_mm']))
    out['claimed'] = claimed
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument(
        '--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--rounds', type=int, default=20)
    ap.add_argument('--out')
    args = ap.parse_args(argv)
    rows = {n: measure(*CONFIGS[n], args.rounds) for n in args.configs}
    result = dict(
        torch=torch.__version__,
        device=torch.cuda.get_device_name()
        if torch.cuda.is_available() else 'cpu',
        threads=torch.get_num_threads(),
        rounds=args.rounds,
        rows=rows)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    print('\n| config | optimizer | params | groups with params (default / '
          'wrs_mm) | foreach ops per step (default / wrs_mm) | step, ms '
          '(default / wrs_mm) | ratio |\n|---|---|---|---|---|---|---|')
    for name, r in rows.items():
        d, w = r['mmengine_default'], r['wrs_mm']
        print(f"| {name} | {r['optimizer']} | {r['params']} | "
              f"{d['groups_with_params']} / {w['groups_with_params']} | "
              f"{d['foreach_ops']} / {w['foreach_ops']} | "
              f"{d['step_ms']:.1f} / {w['step_ms']:.1f} | "
              f"{r['step_ratio']:.2f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
