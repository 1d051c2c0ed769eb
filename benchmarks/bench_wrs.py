"""Cost of WRS and of the eps-shifted regularizer, as ratios within one run.

(a) the rescale op over all invariant weights of a real model, against a
    same-size ``torch._foreach_mul_`` (the memory-bound floor) and a naive
    per-parameter loop;
(b) a whole train step (forward, backward, SGD-momentum step) with WRS at tau=1
    against the same step without it;
(c) the shifted-L2 regularizer step against plain weight decay;
(d) SGD-momentum + WRS (tau=1) against SGDP (clovaai ``adamp``), which projects
    scale-invariant weights every step.

Models: mmdet YOLOv3 (BN trained, ``norm_eval=False``) and Faster R-CNN R50
(``norm_eval=False, frozen_stages=-1`` so that its backbone convs are
invariant), built from the installed configs, on real COCO images.

    python benchmarks/bench_wrs.py [--size 320] [--steps 8] [--out bench.json]

Prints JSON and a table. Step timings alternate between the variants so that
machine drift affects all of them alike; medians are reported.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
from mm_models import det_model_and_loss  # noqa: E402

from wrs_mm.core import (RowEntry, ShiftedLpEntry, ShiftedLpRegularizer,  # noqa
                         WeightRescaler, analyze_invariance)

MODELS = {
    'yolov3_d53': ('mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py',
                   {'backbone.norm_eval': False}),
    'faster_rcnn_r50': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                        {'backbone.norm_eval': False,
                         'backbone.frozen_stages': -1}),
}


def _median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_op(params, rows, reps):
    entries = [RowEntry(str(i), p, r) for i, (p, r) in enumerate(zip(params,
                                                                     rows))]
    wrs = WeightRescaler(entries)

    def naive():
        for p, r in zip(params, rows):
            n = p.view(r, -1).norm(dim=1)
            p.view(r, -1).div_(n[:, None])

    floor = lambda: torch._foreach_mul_(params, 1.0)  # noqa: E731
    with torch.no_grad():
        wrs()  # warm up
        t = {k: _median_time(f, reps) for k, f in
             (('wrs', wrs), ('foreach_mul_floor', floor), ('naive_loop', naive))}
    return t


def bench_steps(model, loss_fn, inv, steps):
    from adamp import SGDP
    params = dict(model.named_parameters())
    inv_p = [params[v.name] for v in inv]
    inv_ids = {id(p) for p in inv_p}
    rest = [p for p in model.parameters() if id(p) not in inv_ids
            and p.requires_grad]

    def sgd(wd_inv):
        return torch.optim.SGD([dict(params=inv_p, weight_decay=wd_inv),
                                dict(params=rest)], lr=1e-4, momentum=0.9,
                               weight_decay=5e-4)

    wrs = WeightRescaler([RowEntry(v.name, params[v.name], v.rows)
                          for v in inv])
    reg = ShiftedLpRegularizer(
        [ShiftedLpEntry(v.name, params[v.name], 5e-4) for v in inv], eps=1e-3)
    variants = {
        'sgd_wd': (sgd(5e-4), None, None),
        'sgd_wrs_tau1': (sgd(0.), None, wrs),
        'sgd_shifted_l2': (sgd(0.), reg, None),
        'sgdp': (SGDP(model.parameters(), lr=1e-4, momentum=0.9,
                      weight_decay=5e-4, nesterov=True), None, None),
    }
    times = {k: [] for k in variants}
    for i in range(steps + 1):  # first round is warm-up
        for name, (opt, pre, post) in variants.items():
            t = time.perf_counter()
            opt.zero_grad()
            loss_fn().backward()
            if pre is not None:
                pre.step_()
            opt.step()
            if post is not None:
                post()
            if i:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', type=int, default=320)
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--op-reps', type=int, default=20)
    ap.add_argument('--models', nargs='+', default=list(MODELS))
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = dict(device='cpu', threads=torch.get_num_threads(),
                   torch=torch.__version__, size=args.size, models={})
    for name in args.models:
        cfg, overrides = MODELS[name]
        model, loss_fn = det_model_and_loss(cfg, size=args.size,
                                            model_overrides=overrides)
        inv = analyze_invariance(model, loss_fn).invariant()
        params = dict(model.named_parameters())
        op = bench_op([params[v.name].data for v in inv],
                      [v.rows for v in inv], args.op_reps)
        step = bench_steps(model, loss_fn, inv, args.steps)
        base = step['sgd_wd']
        results['models'][name] = dict(
            invariant_weights=len(inv),
            invariant_elements=sum(params[v.name].numel() for v in inv),
            op_seconds=op, step_seconds=step,
            ratios=dict(
                op_vs_foreach_floor=op['wrs'] / op['foreach_mul_floor'],
                op_vs_naive_loop=op['wrs'] / op['naive_loop'],
                op_share_of_step=op['wrs'] / base,
                step_wrs_tau1_vs_wd=step['sgd_wrs_tau1'] / base,
                step_shifted_vs_wd=step['sgd_shifted_l2'] / base,
                step_wrs_tau1_vs_sgdp=step['sgd_wrs_tau1'] / step['sgdp'],
            ))
    print(json.dumps(results, indent=1))
    print(f"\n{'model':<16} {'weights':>7} {'op/floor':>9} {'op/naive':>9} "
          f"{'op/step':>8} {'WRS/WD':>7} {'shift/WD':>8} {'WRS/SGDP':>8}")
    for name, r in results['models'].items():
        q = r['ratios']
        print(f"{name:<16} {r['invariant_weights']:>7} "
              f"{q['op_vs_foreach_floor']:>9.2f} {q['op_vs_naive_loop']:>9.2f} "
              f"{q['op_share_of_step']:>8.2%} {q['step_wrs_tau1_vs_wd']:>7.3f} "
              f"{q['step_shifted_vs_wd']:>8.3f} "
              f"{q['step_wrs_tau1_vs_sgdp']:>8.3f}")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
