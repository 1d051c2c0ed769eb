"""Liu et al. 2021's classification comparison (Table 1, Fig. 1) at CPU
scale, and the ablations that explain it, on the shipped CIFAR-10 subset: a
:mod:`wrs_mm.apis.paired_study` over arms built from the shipped configs.

    python benchmarks/study_cifar10.py [--seeds 5] [--epochs 12]
        [--arms wd wrs wrs_init wrs_fc shifted none] [--max-seeds ARM=N ...]
        [--tau adamw=20 sgdm=10] [--previous OLD.json] [--jobs 2]
        [--work-dir work_dirs/study_cifar10] [--out docs/study_cifar10.json]
        [--collect-only] [--smoke]

Every arm is a shipped config (``configs/classification/vgg16-bn_*``: the WD
config or its WRS twin, exactly as a user writes them) shrunk by
:func:`study_config`, dumped to ``<work-dir>/configs/<opt>_<arm>.py`` and
trained by ``tools/train.py`` through the paired-study runner:

* data: the 20,000 training images of ``cifar10_subset`` minus the last 200
  of each class, held out as the validation split (tau is chosen on it, never
  on the test set); the 10,000 test images. Both are evaluated after every
  epoch (``Accuracy`` metrics tagged ``val`` / ``test``);
* model: VGG16-BN (13 convs, each followed by BN) with every width times
  ``--width``;
* schedule: ``--epochs`` epochs for every arm, lr x0.1 at 30 / 60 / 80 % of
  them (the paper's 60 / 120 / 160 of 200), batch 100, the paper's
  augmentation, lambda 5e-4;
* arms per optimizer (SGDM lr 0.1, AdamW lr 1e-3): ``wd`` (the WD config),
  ``wrs`` (its WRS twin, unit norm; tau in {10, 20, 40} picked by the seed-0
  validation accuracy unless ``--tau`` gives it), ``wrs_init`` (the same with
  ``target_norm='init'``), ``wrs_fc`` (the classifier rescaled too, as Supp.
  B.2 does: ``include=['weight$']``, ``allow_non_invariant=True``),
  ``shifted`` (eps-shifted L2, eps 1e-3, on the BN convs; WD elsewhere) and
  ``none`` (no weight decay);
* seeds: seed s gives every arm the same initial weights and the same data
  order and augmentation, so arm differences are paired. ``--max-seeds``
  trains an arm on its first N seeds only.

``--previous`` takes the JSON of an earlier run of this script: its per-seed
results of the arms this run does not train on that seed are reused (same
epochs, width, holdout and tau only), and on the seeds both trained the two
results are compared (``reproduced``: the largest difference of the test
curves, 0 when CPU training is bitwise reproducible).

Writes ``--out`` (JSON: per optimizer the paired summary against ``wd``,
curves, the tau selection, the reproduction check, wall time), a markdown
table next to it, ``<out>_<optimizer>_curves.png`` (test accuracy over
epochs, Fig. 1 style, per optimizer) and ``<out>_norms.png`` (conv norms and
effective lr of the first optimizer's seed-0 runs, from
``NormDynamicsHook``), and prints the table.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

from mmengine.config import Config

from wrs_mm.apis import paired_study as ps
from wrs_mm.apis.norm_plot import plot_norm_dynamics
from wrs_mm.testing import repo_root
from wrs_mm.testing import small_scale as C

TAUS = (10, 20, 40)
ARMS = ('wd', 'wrs', 'wrs_init', 'wrs_fc', 'shifted', 'none')
CONFIGS = {
    'sgdm': ('vgg16-bn_sgdm-wd_1xb100-200e_cifar10.py',
             'vgg16-bn_sgdm-wrs-tau40_1xb100-200e_cifar10.py'),
    'adamw': ('vgg16-bn_adamw-wd_1xb100-200e_cifar10.py',
              'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py'),
}
METRIC = 'test/top1'


def study_config(opt: str,
                 arm: str,
                 args,
                 tau: int = None,
                 config: str = None) -> Config:
    """The shipped config of ``opt`` / ``arm`` (or the shipped ``config``,
    a file name under ``configs/classification``) at CPU scale (see the
    module docstring); the seed is set per run."""
    wd_cfg, wrs_cfg = CONFIGS[opt]
    wrs = arm.startswith('wrs')
    cfg = Config.fromfile(
        osp.join(repo_root(), 'configs', 'classification', config
                 or (wrs_cfg if wrs else wd_cfg)))
    if wrs:
        cfg.custom_hooks[0].interval = tau
    if arm == 'wrs_init':
        cfg.custom_hooks[0].target_norm = 'init'
    elif arm == 'wrs_fc':
        cfg.custom_hooks[0].update(
            include=['weight$'], allow_non_invariant=True)
    elif arm == 'none':
        cfg.optim_wrapper.optimizer.weight_decay = 0.
    elif arm == 'shifted':
        cfg.optim_wrapper.constructor = 'WRSOptimWrapperConstructor'
        cfg.optim_wrapper.paramwise_cfg = dict(
            shifted_reg=dict(
                eps=1e-3,
                p=2,
                mode='coupled' if opt == 'sgdm' else 'decoupled'))
    cfg.model.backbone.width = args.width
    # the whole subset with a validation holdout, not small_scale.shrink_cls's
    # class-balanced handful of images
    split = dict(type='ImageFolderDataset', data_root=C.cifar_subset_root())
    train = dict(
        split,
        data_prefix='train',
        holdout_per_class=args.holdout,
        pipeline=cfg.train_pipeline)
    val = dict(
        split,
        data_prefix='train',
        holdout_per_class=args.holdout,
        holdout=True,
        tag='val',
        pipeline=cfg.test_pipeline)
    test = dict(
        split, data_prefix='test', tag='test', pipeline=cfg.test_pipeline)
    if args.smoke:  # every 40th training / test image
        train['indices'] = list(range(0, 20000 - 10 * args.holdout, 40))
        test['indices'] = list(range(0, 10000, 40))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.train_dataloader.dataset = train
    cfg.val_dataloader.dataset = dict(
        type='ConcatDataset', datasets=[val, test])
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = [
        dict(type='Accuracy', tag='val', prefix='val'),
        dict(type='Accuracy', tag='test', prefix='test')
    ]
    cfg.test_evaluator = cfg.val_evaluator
    e = args.epochs
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=e, val_interval=1)
    cfg.param_scheduler = [
        dict(
            type='MultiStepLR',
            by_epoch=True,
            milestones=[round(e * f) for f in (.3, .6, .8)],
            gamma=0.1)
    ]
    # the final weights, for tools/analysis/isp_sparsity.py
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=e)
    cfg.default_hooks.logger.interval = 50
    steps = -(-len(train.get('indices', range(20000 - 10 * args.holdout))) //
              cfg.train_dataloader.batch_size)
    cfg.custom_hooks = cfg.get('custom_hooks', []) + [
        dict(
            type='NormDynamicsHook',
            interval=max(1, steps // 4),
            include=r'^backbone\..*weight$')
    ]
    return cfg


def make_arm(opt: str, arm: str, args, tau: int = None) -> ps.Arm:
    """The arm's config dumped under ``<work-dir>/configs``."""
    name = f'{opt}_{arm}' + (f'_tau{tau}' if arm == 'wrs' else '')
    path = osp.abspath(osp.join(args.work_dir, 'configs', name + '.py'))
    os.makedirs(osp.dirname(path), exist_ok=True)
    study_config(opt, arm, args, tau).dump(path)
    return ps.Arm(name, path)


def study(arms, seeds, args, metric=METRIC) -> dict:
    return ps.run_study(
        arms,
        seeds,
        args.work_dir,
        metric,
        jobs=args.jobs,
        collect_only=args.collect_only,
        env=dict(OMP_NUM_THREADS=str(args.threads)))


def select_tau(opt: str, args) -> tuple:
    """tau with the best seed-0 validation accuracy, and every tau's."""
    arms = [make_arm(opt, 'wrs', args, t) for t in TAUS]
    curves = study(arms, [0], args, 'val/top1')['curves']
    val = {t: curves[a.name][0][-1][1] for t, a in zip(TAUS, arms)}
    return max(TAUS, key=val.get), val


def previous_runs(path: str, args) -> dict:
    """``{(opt, arm, seed): test curve}`` of an earlier run of this script
    with the same epochs / width / holdout (wrs only at the same tau)."""
    if not path:
        return {}
    with open(path) as f:
        old = json.load(f)
    if any(old['args'][k] != getattr(args, k)
           for k in ('epochs', 'width', 'holdout')):
        raise ValueError(f'--previous {path}: trained with other epochs / '
                         'width / holdout than this run')
    tau = old.get('best_tau', {})
    return {
        (r['optimizer'], r['arm'], r['seed']): r['test']
        for r in old['runs'] if not r['arm'].startswith('wrs')
        or r['tau'] == tau.get(r['optimizer'])
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--epochs', type=int, default=12)
    ap.add_argument('--width', type=float, default=0.125)
    ap.add_argument(
        '--holdout',
        type=int,
        default=200,
        help='validation images held out per class')
    ap.add_argument(
        '--optimizers',
        nargs='+',
        default=['adamw', 'sgdm'],
        choices=list(CONFIGS))
    ap.add_argument(
        '--arms',
        nargs='+',
        default=['wd', 'wrs', 'wrs_init', 'wrs_fc', 'shifted'],
        choices=ARMS)
    ap.add_argument(
        '--max-seeds',
        nargs='*',
        default=[],
        metavar='ARM=N',
        help='train ARM (or OPT_ARM) on its first N seeds only')
    ap.add_argument(
        '--tau',
        nargs='*',
        default=[],
        metavar='OPT=TAU',
        help='skip the tau selection for OPT')
    ap.add_argument('--previous', help='JSON of an earlier run to reuse')
    ap.add_argument('--jobs', type=int, default=2, help='parallel runs')
    ap.add_argument(
        '--threads', type=int, default=1, help='torch threads per run')
    ap.add_argument('--work-dir', default='work_dirs/study_cifar10')
    ap.add_argument('--out', default='docs/study_cifar10.json')
    ap.add_argument('--collect-only', action='store_true')
    ap.add_argument(
        '--smoke',
        action='store_true',
        help='a 1/40 subset, for the tests (seconds a run)')
    args = ap.parse_args(argv)
    if 'wd' not in args.arms:
        ap.error('--arms must include wd, the baseline')
    limits = dict(kv.split('=') for kv in args.max_seeds)
    taus = {k: int(v) for k, v in (kv.split('=') for kv in args.tau)}
    old = previous_runs(args.previous, args)
    t0 = time.time()
    result = dict(args=vars(args), tau_selection_val={}, best_tau={})
    summaries, runs = {}, []
    for opt in args.optimizers:
        if opt not in taus and any(a.startswith('wrs') for a in args.arms):
            taus[opt], result['tau_selection_val'][opt] = select_tau(opt, args)
        result['best_tau'][opt] = taus.get(opt)
        arms = [make_arm(opt, a, args, taus.get(opt)) for a in args.arms]
        by_seeds: dict = {}
        for a, short in zip(arms, args.arms):
            n = int(limits.get(a.name, limits.get(short, args.seeds)))
            by_seeds.setdefault(min(n, args.seeds), []).append(a)
        curves: dict = {}
        for n, group in sorted(by_seeds.items(), reverse=True):
            got = study(group, list(range(n)), args)['curves']
            for name, c in got.items():
                curves.setdefault(name, {}).update(c)
        reproduced = {}
        for a, short in zip(arms, args.arms):
            for s in range(args.seeds):
                prev = old.get((opt, short, s))
                mine = curves.get(a.name, {}).get(s)
                if prev is not None and mine is None:  # reused
                    mine = curves.setdefault(
                        a.name,
                        {})[s] = [[i + 1, v] for i, v in enumerate(prev)]
                elif prev is not None:
                    reproduced[f'{a.name}_seed{s}'] = max(
                        abs(x[1] - y) for x, y in zip(mine, prev))
                if mine is not None:
                    runs.append(
                        dict(
                            optimizer=opt,
                            arm=short,
                            seed=s,
                            tau=taus.get(opt)
                            if short.startswith('wrs') else None,
                            test=[v for _, v in mine],
                            reused=prev is not None
                            and f'{a.name}_seed{s}' not in reproduced))
        summaries[opt] = ps.write_report(
            dict(curves=curves),
            f'{opt}_wd',
            METRIC,
            osp.dirname(osp.abspath(args.out)),
            title=f'VGG16-BN (width {args.width}), {opt.upper()}, '
            f'{args.epochs} epochs, CIFAR-10 subset',
            stem=osp.splitext(osp.basename(args.out))[0] + f'_{opt}')
        summaries[opt]['reproduced'] = reproduced
    stem = osp.splitext(args.out)[0]
    opt = args.optimizers[0]
    plotted = [
        ps.run_dir(args.work_dir, name, 0) for name in summaries[opt]['arms']
        if name.split('_', 1)[1].split('_tau')[0] in ('none', 'wd', 'wrs',
                                                      'wrs_init')
    ]
    plotted = [d for d in plotted if osp.isdir(d)]
    plot_norm_dynamics(
        plotted,
        labels=[f'{d.split(os.sep)[-2]} (seed 0)' for d in plotted],
        out=stem + '_norms.png')
    result.update(seconds=time.time() - t0, summary=summaries, runs=runs)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    for opt, s in summaries.items():
        print(f"\n{opt} (tau {result['best_tau'][opt]}):")
        print(ps.markdown_table(s))
        if s['reproduced']:
            print('reproduced (largest test-curve difference to --previous):',
                  s['reproduced'])
    print(f"{result['seconds']:.0f} s; {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
