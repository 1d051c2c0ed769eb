"""What the optimizer step of a shipped config costs with wrs_mm's constructor
against mmengine's default constructor, within one run.

``WRSOptimWrapperConstructor`` builds the optimizer of a config with one
param group per parameter (so that WRS and the shifted regularizer can take
the decay off exactly the weights they act on). PyTorch's ``foreach``
optimizers launch their multi-tensor ops per group, so the count of
``aten::_foreach_*`` ops per ``optimizer.step()`` grows with the groups: on a
GPU each is a kernel launch. Both optimizers are built from the config's own
``optim_wrapper`` (``foreach=True``), on its real model (random init), with
the same random gradients; the ops are counted with ``torch.profiler`` and
the steps timed alternating, medians.

    python benchmarks/bench_optimizer_step.py [--rounds 20]
        [--configs yolov3 ...] [--out bench.json]
"""
import argparse
import copy
import json
import os.path as osp
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, init_default_scope

from wrs_mm.apis.from_config import strip_pretrained
from wrs_mm.testing import repo_root

CONFIGS = {
    'yolov3':
    'configs/yolov3/'
    'yolov3_d53-bn_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py',
    'faster_rcnn_gn_ws':
    'configs/faster_rcnn/'
    'faster-rcnn_r50_fpn_gn-ws-all_wrs-tau10_1x_coco.py',
    'cifar_vgg16_bn':
    'configs/classification/'
    'vgg16-bn_sgdm-wrs-tau40_1xb100-200e_cifar10.py',
}


def build_model(cfg: Config) -> torch.nn.Module:
    from mmengine.registry import MODELS
    init_default_scope(cfg.get('default_scope') or 'mmengine')
    model_cfg = copy.deepcopy(cfg.model)
    strip_pretrained(model_cfg)
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


def build_optimizer(cfg: Config, model, constructor: str):
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    wrapper.pop('constructor', None)
    paramwise = wrapper.pop('paramwise_cfg', None)
    wrapper.optimizer['foreach'] = True
    return OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type=constructor,
            optim_wrapper_cfg=wrapper,
            paramwise_cfg=paramwise))(model).optimizer


def foreach_ops(optimizer) -> int:
    """``aten::_foreach_*`` ops of one ``optimizer.step()`` once the state
    exists (the momentum buffers are made on the first step)."""
    optimizer.step()
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        optimizer.step()
    return sum(e.count for e in prof.key_averages()
               if e.key.startswith('aten::_foreach_'))


def measure(config: str, rounds: int) -> dict:
    cfg = Config.fromfile(osp.join(repo_root(), config))
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    optimizers = {
        name: build_optimizer(cfg, model, ctor)
        for name, ctor in (('mmengine_default',
                            'DefaultOptimWrapperConstructor'),
                           ('wrs_mm', 'WRSOptimWrapperConstructor'))
    }
    out = {
        name: dict(groups=len(o.param_groups), foreach_ops=foreach_ops(o))
        for name, o in optimizers.items()
    }
    times = {name: [] for name in optimizers}
    names = list(optimizers)
    for i in range(rounds):  # alternating, each first in every other round
        for name in names[i % 2:] + names[:i % 2]:
            o = optimizers[name]
            t = time.perf_counter()
            o.step()
            times[name].append(time.perf_counter() - t)
    for name in optimizers:
        out[name]['step_ms'] = 1e3 * statistics.median(times[name])
    out['step_ratio'] = out['wrs_mm']['step_ms'] / \
        out['mmengine_default']['step_ms']
    out['optimizer'] = cfg.optim_wrapper.optimizer.type
    out['params'] = sum(1 for p in model.parameters() if p.requires_grad)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument(
        '--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--rounds', type=int, default=20)
    ap.add_argument('--out')
    args = ap.parse_args(argv)
    rows = {n: measure(CONFIGS[n], args.rounds) for n in args.configs}
    result = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        rounds=args.rounds,
        rows=rows)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    print('\n| config | optimizer | params | groups (default / wrs_mm) | '
          'foreach ops per step (default / wrs_mm) | step, ms (default / '
          'wrs_mm) | ratio |\n|---|---|---|---|---|---|---|')
    for name, r in rows.items():
        d, w = r['mmengine_default'], r['wrs_mm']
        print(f"| {name} | {r['optimizer']} | {r['params']} | "
              f"{d['groups']} / {w['groups']} | {d['foreach_ops']} / "
              f"{w['foreach_ops']} | {d['step_ms']:.1f} / "
              f"{w['step_ms']:.1f} | {r['step_ratio']:.2f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
