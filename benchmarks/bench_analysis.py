"""What the first-forward analysis costs at a config's real input size.

WeightRescaleHook and the shifted regularizer decide which weights are
scale-invariant on the first training forward (``analyze_invariance``: one
forward whose autograd graph is walked back from each weight, and the BN eps
check on that batch). This measures it for each shipped detection and
segmentation config, on its real model (random init, no download) and a
synthetic batch at the size the config trains at, against a training
forward + backward of the same batch, within one run.

    python benchmarks/bench_analysis.py [--batch 2] [--rounds 3]
        [--configs yolov3 faster_rcnn ...] [--out bench.json]

Prints JSON and a table; the analysis is paid once per run (and once more on
resume), so the ratio is in steps of the run's length.
"""
import argparse
import json
import os.path as osp
import sys

import torch

from wrs_mm.apis import build_from_config, load_config
from wrs_mm.core import analyze_invariance
from wrs_mm.testing import repo_root
from wrs_mm.testing.bench_utils import alternate

# name -> (shipped config, train size H W: the largest scale its pipeline
# resizes to)
CONFIGS = {
    'yolov3':
    ('configs/yolov3/'
     'yolov3_d53-bn_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py', (640, 640)),
    'faster_rcnn_syncbn':
    ('configs/faster_rcnn/'
     'faster-rcnn_r50_fpn_syncbn-wrs-tau10_1x_coco.py', (800, 1333)),
    'faster_rcnn_gn_ws':
    ('configs/faster_rcnn/'
     'faster-rcnn_r50_fpn_gn-ws-all_wrs-tau10_1x_coco.py', (800, 1333)),
    'cascade_rcnn_gn_ws':
    ('configs/cascade_rcnn/'
     'cascade-rcnn_r50_fpn_gn-ws-all_wrs-tau10_20e_coco.py', (800, 1333)),
    'mask_rcnn_gn_ws': ('configs/mask_rcnn/'
                        'mask-rcnn_r50_fpn_gn-ws-all_wrs-tau10_2x_coco.py',
                        (800, 1333)),
    'deeplabv3_r101': ('configs/deeplabv3/deeplabv3_r101-d16_adamw-wrs-'
                       'tau10_2xb5-55k_voc12aug-512x512.py', (512, 512)),
}


def measure(config: str, size, batch: int, rounds: int) -> dict:
    cfg = load_config(
        osp.join(repo_root(), config), {'train_dataloader.batch_size': batch})
    model, batches, loss = build_from_config(
        cfg, pretrained=False, synthetic=size)
    data = next(batches)

    def step():
        model.zero_grad(set_to_none=True)
        loss(data).backward()

    reports = []

    def analysis():
        reports[:] = [analyze_invariance(model, lambda: loss(data))]

    # warm-up: allocator, lazy inits; alternating, so that drift hits both
    t = alternate(dict(step=step, analysis=analysis), rounds, warmup=1)
    report, = reports
    step_s, analysis_s = t['step']['median'], t['analysis']['median']
    return dict(
        config=config,
        input=f'{batch}x3x{size[0]}x{size[1]}',
        invariant_weights=len(report.invariant()),
        candidates=len(report.candidates()),
        step_s=step_s,
        analysis_s=analysis_s,
        ratio=analysis_s / step_s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument(
        '--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--out')
    args = ap.parse_args(argv)
    rows = {}
    for name in args.configs:
        config, size = CONFIGS[name]
        rows[name] = measure(config, size, args.batch, args.rounds)
        print(json.dumps({name: rows[name]}), flush=True)
    result = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        batch=args.batch,
        rounds=args.rounds,
        rows=rows)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    print('\n| config | input | invariant / candidates | train step, s '
          '| analysis, s | analysis / step |\n|---|---|---|---|---|---|')
    for name, r in rows.items():
        print(f"| {name} | {r['input']} | {r['invariant_weights']} / "
              f"{r['candidates']} | {r['step_s']:.2f} | "
              f"{r['analysis_s']:.2f} | {r['ratio']:.2f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
