"""The main job at CPU scale: train YOLOv3 (Darknet-53, BN trained) from the
shipped configs on coco_tiny, with WRS and with plain weight decay, evaluate
both with COCO mAP, and plot per-layer weight norms over training.

    python tools/demo.py [--work-dir work_dirs/demo] [--epochs 20] [--size 160]

The data is the clone's ``sample_data/coco_tiny`` (32 train, 16 val images),
or ``$WRS_MM_DATA/coco_tiny`` (any COCO-layout set: all its images are used).

Writes, per run (``wrs/`` and ``wd/``): the log, the last checkpoint,
``norm_dynamics.jsonl``, the COCO metrics; for WRS also ``wrs_invariance.json``
(rescaled and refused weights with reasons); and ``norm_dynamics.png``
comparing the two. Prints a summary at the end (COCO mAP on the val images,
and on the training images).
"""
import argparse
import glob
import json
import os.path as osp
import time

from mmengine.config import Config

from wrs_mm.apis import allow_full_checkpoint_load, plot_norm_dynamics
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.testing import coco_root, get_hook, small_scale

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIGS = {
    'wrs':
    'configs/yolov3/yolov3_d53-bn_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py',
    'wd': 'configs/yolov3/yolov3_d53-bn_wd_1xb8-ms-320-640-100e-cos_coco.py',
}


def run(name, args):
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[name]))
    work_dir = osp.join(args.work_dir, name)
    small_scale.shrink_det(
        cfg,
        work_dir,
        size=args.size,
        epochs=args.epochs,
        images=None,
        batch_size=args.batch_size)
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'WeightRescaleHook':
            hook['interval'] = args.tau
    cfg.custom_hooks = cfg.get('custom_hooks', []) + [
        dict(type='NormDynamicsHook', interval=args.record_every)
    ]
    cfg.optim_wrapper.optimizer.lr = args.lr
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.experiment_name = f'demo_{name}'
    t = time.time()
    runner, losses, metrics = small_scale.train_and_test(cfg)
    # also on the training images: from scratch in a few minutes the
    # detector can only have learnt those
    runner._test_loop = dict(type='TestLoop')
    runner._test_dataloader = cfg.test_dataloader
    runner._test_dataloader.dataset.ann_file = \
        'annotations/instances_train2017.json'
    runner._test_dataloader.dataset.data_prefix = dict(img='train2017/')
    runner._test_evaluator = dict(
        type='CocoMetric',
        metric='bbox',
        ann_file=coco_root() + 'annotations/instances_train2017.json')
    train_metrics = runner.test()
    return dict(
        work_dir=work_dir,
        losses=losses,
        metrics=metrics,
        train_metrics=train_metrics,
        seconds=time.time() - t,
        images=len(runner.train_dataloader.dataset),
        runner=runner)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--work-dir', default='work_dirs/demo')
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--size', type=int, default=160)
    ap.add_argument('--batch-size', type=int, default=4)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--tau', type=int, default=10)
    ap.add_argument('--record-every', type=int, default=5)
    args = ap.parse_args()
    allow_full_checkpoint_load()
    results = {name: run(name, args) for name in ('wrs', 'wd')}
    png = osp.join(args.work_dir, 'norm_dynamics.png')
    plot_norm_dynamics([results['wrs']['work_dir'], results['wd']['work_dir']],
                       ['WRS (tau=%d)' % args.tau, 'weight decay'],
                       out=png)
    hook = get_hook(results['wrs']['runner'], WeightRescaleHook)
    table = json.load(
        open(osp.join(results['wrs']['work_dir'], 'wrs_invariance.json')))
    summary = dict(
        rescaled_weights=sum(r['rescaled'] for r in table),
        refused_weights=[r['name'] for r in table if not r['rescaled']],
        wrs_rescale_events=hook.num_rescales,
        plot=png)
    print('\n==== wrs_mm demo: YOLOv3 on coco_tiny '
          f"({args.epochs} epochs of {results['wrs']['images']} images at "
          f'{args.size}px) ====')
    for name, r in results.items():
        ckpt = sorted(glob.glob(osp.join(r['work_dir'], 'epoch_*.pth')))[-1]
        log = glob.glob(osp.join(r['work_dir'], '*', '*.log'))[0]
        summary[name] = dict(
            loss_first=r['losses'][0],
            loss_last=r['losses'][-1],
            mAP=r['metrics']['coco/bbox_mAP'],
            mAP_50=r['metrics']['coco/bbox_mAP_50'],
            train_mAP_50=r['train_metrics']['coco/bbox_mAP_50'],
            seconds=round(r['seconds']),
            checkpoint=ckpt,
            log=log)
        print(f"{name.upper():>3}: loss {r['losses'][0]:.1f} -> "
              f"{r['losses'][-1]:.1f}, bbox mAP {summary[name]['mAP']:.4f}, "
              f"mAP@0.5 {summary[name]['mAP_50']:.4f} (val), "
              f"{summary[name]['train_mAP_50']:.4f} (train images), "
              f"{r['seconds']:.0f} s\n     log {log}\n     checkpoint {ckpt}")
    print(
        f"WRS rescaled {summary['rescaled_weights']} weights "
        f"({hook.num_rescales} rescale events), refused "
        f"{len(summary['refused_weights'])}: "
        f"{', '.join(summary['refused_weights'])}\n"
        f"     table {osp.join(results['wrs']['work_dir'], 'wrs_invariance')}"
        '.json'
        f"\nnorm plot {png}")
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1, default=float)


if __name__ == '__main__':
    main()
