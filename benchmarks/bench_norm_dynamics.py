"""Overhead of NormDynamicsHook's measurement as a ratio of train-step time.

    python benchmarks/bench_norm_dynamics.py [--size 320] [--steps 6]
        [--interval 50] [--out docs/bench_norm_dynamics_cpu.json]

On YOLOv3 (BN trained, all 75 weights recorded) and Faster R-CNN R50 built from
the installed mmdet configs, one real COCO batch: the median step time without
measurement, the median time of one measurement (the hook's pre-step and
post-step work: per-channel norms, cosine, effective lr, one host sync) and the
amortized ratio at the hook's interval, taken from the measured whole-step
ratio when measuring every step (interval 1, the worst case; the two variants
alternate so that machine drift hits both alike) spread over the interval.
"""
import argparse
import json
import os
import statistics
import time

import torch

from wrs_mm.core.diagnostics import StepProbe
from wrs_mm.testing.mm_models import BN_TRAINED_DETECTORS, det_model_and_loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', type=int, default=320)
    ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--interval', type=int, default=50)
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = dict(device='cpu', interval=args.interval, models={})
    for name, (cfg, overrides) in BN_TRAINED_DETECTORS.items():
        model, loss_fn = det_model_and_loss(
            cfg, size=args.size, model_overrides=overrides)
        named = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad and p.dim() >= 2]
        probe = StepProbe(named)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        lrs = [1e-4] * len(named)
        plain, measured, probe_only = [], [], []
        for i in range(args.steps + 1):
            for record in (False, True):
                t = time.perf_counter()
                opt.zero_grad()
                loss_fn().backward()
                tp = time.perf_counter()
                if record:
                    probe.before(lrs)
                tp = time.perf_counter() - tp
                opt.step()
                t2 = time.perf_counter()
                if record:
                    probe.after()
                    tp += time.perf_counter() - t2
                if i:
                    (measured
                     if record else plain).append(time.perf_counter() - t)
                    if record:
                        probe_only.append(tp)
        step, cost = statistics.median(plain), statistics.median(probe_only)
        every = statistics.median(measured) / step
        results['models'][name] = dict(
            recorded_weights=len(named),
            step_seconds=step,
            measurement_seconds=cost,
            every_step_ratio=every,
            # a record every `interval` steps: its whole measured extra step
            # time (the probe and its side effects) spread over the interval
            amortized_ratio=1 + (every - 1) / args.interval)
    print(json.dumps(results, indent=1))
    print(f"\n{'model':<16} {'weights':>7} {'step s':>7} {'measure ms':>10} "
          f"{'ratio @' + str(args.interval):>9} {'ratio @1':>8}")
    for name, r in results['models'].items():
        print(f"{name:<16} {r['recorded_weights']:>7} "
              f"{r['step_seconds']:>7.3f} "
              f"{r['measurement_seconds'] * 1e3:>10.1f} "
              f"{r['amortized_ratio']:>9.4f} {r['every_step_ratio']:>8.3f}")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
