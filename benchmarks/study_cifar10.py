"""Liu et al. 2021's classification comparison (Table 1, Fig. 1, Fig. 5) at
CPU scale, through the plugin: WD versus WRS (and optionally no
regularization and the eps-shifted L2) on the shipped CIFAR-10 subset.

    python benchmarks/study_cifar10.py [--seeds 5] [--epochs 16]
        [--width 0.125] [--jobs 2] [--work-dir work_dirs/study_cifar10]
        [--out docs/study_cifar10.json] [--smoke]

Every run is a shipped config (``configs/classification/vgg16-bn_*``, the WD
config and its WRS twin, exactly as a user writes them) shrunk by
:func:`study_config` and trained with ``tools/train.py`` in its own process:

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
  ``wrs`` (its WRS twin; tau in {10, 20, 40} picked by the seed-0 validation
  accuracy, then run on every seed), ``none`` (weight decay 0) and
  ``shifted`` (eps-shifted L2, eps 1e-3, on the BN convs; WD elsewhere) as
  ``--extra-arms`` allows;
* seeds: seed s gives every arm the same initial weights and the same data
  order and augmentation (``randomness.seed``), so arm differences are
  paired.

Writes ``--out`` (JSON: per-run curves, summary, paired WRS - WD with a 95 %
t interval, wins, wall time), ``study_cifar10_curves.png`` (test accuracy over
epochs, Fig. 1 style), ``study_cifar10_norms.png`` (conv norms and effective
lr from ``NormDynamicsHook``) next to it, and prints a table. Each run's work
dir keeps its config and final checkpoint (seed 0) for
``tools/analysis/isp_sparsity.py``.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from mmengine.config import Config

from wrs_mm.apis.norm_plot import plot_norm_dynamics
from wrs_mm.testing import data_root, repo_root

TAUS = (10, 20, 40)
CONFIGS = {
    'sgdm': ('vgg16-bn_sgdm-wd_1xb100-200e_cifar10.py',
             'vgg16-bn_sgdm-wrs-tau40_1xb100-200e_cifar10.py'),
    'adamw': ('vgg16-bn_adamw-wd_1xb100-200e_cifar10.py',
              'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py'),
}


def study_config(opt: str,
                 arm: str,
                 seed: int,
                 work_dir: str,
                 args,
                 tau: int = None) -> Config:
    """The shipped config of ``opt`` / ``arm`` at CPU scale (see the module
    docstring)."""
    wd_cfg, wrs_cfg = CONFIGS[opt]
    cfg = Config.fromfile(
        osp.join(repo_root(), 'configs', 'classification',
                 wrs_cfg if arm == 'wrs' else wd_cfg))
    if arm == 'wrs':
        cfg.custom_hooks[0].interval = tau
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
    root = osp.join(data_root(), 'cifar10_subset')
    split = dict(type='ImageFolderDataset', data_root=root)
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
    if args.smoke:  # every 10th training / 20th test image
        train['indices'] = list(range(0, 20000 - 10 * args.holdout, 10))
        test['indices'] = list(range(0, 10000, 20))
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
    # the final weights of seed 0, for the ISP analysis
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=e if seed == 0 else e + 1)
    cfg.default_hooks.logger.interval = 50
    steps = -(-len(train.get('indices', range(20000 - 10 * args.holdout))) //
              cfg.train_dataloader.batch_size)
    cfg.custom_hooks = cfg.get('custom_hooks', []) + [
        dict(
            type='NormDynamicsHook',
            interval=max(1, steps // 4),
            include=r'^backbone\..*weight$')
    ]
    cfg.randomness = dict(seed=seed)
    cfg.work_dir = work_dir
    return cfg


def curves(work_dir: str) -> dict:
    """Per-epoch ``val`` / ``test`` top-1 from the run's scalars.json."""
    out = dict(val=[], test=[])
    runs = sorted(
        d for d in os.listdir(work_dir)
        if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    with open(osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')) as f:
        for line in f:
            rec = json.loads(line)
            for k in out:
                if f'{k}/top1' in rec:
                    out[k].append(rec[f'{k}/top1'])
    return out


def run(spec: tuple, args) -> dict:
    opt, arm, seed, tau = spec
    name = f'{opt}_{arm}' + (f'_tau{tau}' if tau else '') + f'_seed{seed}'
    work_dir = osp.abspath(osp.join(args.work_dir, name))
    result_file = osp.join(work_dir, 'result.json')
    if osp.isfile(result_file) and not args.smoke:  # finished earlier
        with open(result_file) as f:
            return json.load(f)
    os.makedirs(work_dir, exist_ok=True)
    cfg = study_config(opt, arm, seed, work_dir, args, tau)
    cfg_path = osp.join(work_dir, 'study_config.py')
    cfg.dump(cfg_path)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    t0 = time.time()
    with open(osp.join(work_dir, 'train.log'), 'w') as log:
        proc = subprocess.run([
            sys.executable,
            osp.join(repo_root(), 'tools', 'train.py'), cfg_path
        ],
                              env=env,
                              stdout=log,
                              stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f'{name} failed (exit {proc.returncode}): see '
                           f'{work_dir}/train.log')
    res = dict(
        optimizer=opt,
        arm=arm,
        seed=seed,
        tau=tau,
        work_dir=work_dir,
        seconds=time.time() - t0,
        **curves(work_dir))
    with open(result_file, 'w') as f:
        json.dump(res, f)
    print(
        f"{name}: val {res['val'][-1]:.2f} test {res['test'][-1]:.2f} "
        f"({res['seconds']:.0f} s)",
        flush=True)
    return res


def paired(a, b) -> dict:
    """Mean of a - b over seeds with a two-sided 95 % t interval."""
    from scipy import stats
    d = [x - y for x, y in zip(a, b)]
    n, m = len(d), statistics.mean(d)
    sd = statistics.stdev(d) if n > 1 else 0.
    half = stats.t.ppf(0.975, n - 1) * sd / n**.5 if n > 1 else float('nan')
    return dict(
        mean=m,
        std=sd,
        ci95=[m - half, m + half],
        wins=sum(x > 0 for x in d),
        ties=sum(x == 0 for x in d),
        seeds=n,
        diffs=d)


def plot_curves(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(
        1, len(summary), figsize=(5 * len(summary), 3.6), squeeze=False)
    for ax, (opt, arms) in zip(axes[0], summary.items()):
        for arm, runs in arms.items():
            acc = [r['test'] for r in runs]
            mean = [statistics.mean(c) for c in zip(*acc)]
            ep = range(1, len(mean) + 1)
            line, = ax.plot(ep, mean, label=f'{arm} ({len(acc)} seeds)')
            if len(acc) > 1:
                sd = [statistics.stdev(c) for c in zip(*acc)]
                ax.fill_between(
                    ep, [m - s for m, s in zip(mean, sd)],
                    [m + s for m, s in zip(mean, sd)],
                    color=line.get_color(),
                    alpha=.2)
        ax.set_title(
            f'VGG16-BN (narrow), {opt.upper()}, CIFAR-10 subset', fontsize=9)
        ax.set_xlabel('epoch')
        ax.set_ylabel('test top-1 (%), mean +- std')
        ax.legend(fontsize=8)
        ax.grid(alpha=.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--epochs', type=int, default=16)
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
        '--extra-arms',
        nargs='*',
        default=['none', 'shifted'],
        choices=['none', 'shifted'],
        help='arms beside wd / wrs (seed 0 only for none)')
    ap.add_argument('--jobs', type=int, default=2, help='parallel runs')
    ap.add_argument(
        '--threads', type=int, default=1, help='torch threads per run')
    ap.add_argument('--work-dir', default='work_dirs/study_cifar10')
    ap.add_argument('--out', default='docs/study_cifar10.json')
    ap.add_argument(
        '--smoke',
        action='store_true',
        help='a 1/10 subset, for the tests (about a minute)')
    args = ap.parse_args(argv)
    t0 = time.time()
    seeds = list(range(args.seeds))
    pool = ThreadPoolExecutor(args.jobs)

    def batch(specs):
        return list(pool.map(lambda s: run(s, args), specs))

    # 1. tau on the validation split (seed 0), with the other seed-0 runs
    first = [(o, 'wrs', 0, t) for o in args.optimizers for t in TAUS]
    first += [(o, 'wd', 0, None) for o in args.optimizers]
    first += [(o, a, 0, None) for o in args.optimizers
              for a in args.extra_arms]
    done = batch(first)
    best = {
        o:
        max(TAUS,
            key=lambda t: next(r['val'][-1] for r in done
                               if r['optimizer'] == o and r['tau'] == t))
        for o in args.optimizers
    }
    # 2. every arm on the other seeds (no regularization: seed 0 only)
    rest = [
        (o, a, s, best[o] if a == 'wrs' else None) for o in args.optimizers
        for a in ['wd', 'wrs'] + [x for x in args.extra_arms if x != 'none']
        for s in seeds[1:]
    ]
    done += batch(rest)

    summary, table = {}, []
    for o in args.optimizers:
        arms = summary[o] = {}
        for a in ['wd', 'wrs'] + args.extra_arms:
            arms[a] = sorted([
                r for r in done if r['optimizer'] == o and r['arm'] == a and (
                    a != 'wrs' or r['tau'] == best[o])
            ],
                             key=lambda r: r['seed'])
            acc = [r['test'][-1] for r in arms[a]]
            table.append(
                dict(
                    optimizer=o,
                    arm=a,
                    tau=best[o] if a == 'wrs' else None,
                    seeds=len(acc),
                    test_mean=statistics.mean(acc),
                    test_std=statistics.stdev(acc) if len(acc) > 1 else 0.,
                    val_mean=statistics.mean(r['val'][-1] for r in arms[a])))
    comparisons = {
        o: {
            f'{a}-wd':
            paired([r['test'][-1] for r in summary[o][a]],
                   [r['test'][-1] for r in summary[o]['wd']])
            for a in ['wrs'] + [x for x in args.extra_arms if x != 'none']
        }
        for o in args.optimizers
    }
    tau_val = {
        o: {
            t:
            next(r['val'][-1] for r in done
                 if r['optimizer'] == o and r['tau'] == t)
            for t in TAUS
        }
        for o in args.optimizers
    }
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.splitext(args.out)[0]
    plot_curves(summary, stem + '_curves.png')
    o = args.optimizers[0]
    arms = [a for a in ['none', 'wd', 'wrs'] if a in summary[o]]
    plot_norm_dynamics([summary[o][a][0]['work_dir'] for a in arms],
                       labels=[f'{o} {a} (seed 0)' for a in arms],
                       out=stem + '_norms.png')
    result = dict(
        seconds=time.time() - t0,
        args=vars(args),
        tau_selection_val=tau_val,
        best_tau=best,
        table=table,
        paired=comparisons,
        runs=done)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)

    print(f"\n{'opt':<6} {'arm':<8} {'tau':>4} {'seeds':>5} "
          f"{'test top-1':>16} {'val top-1':>9}")
    for r in table:
        print(f"{r['optimizer']:<6} {r['arm']:<8} {r['tau'] or '':>4} "
              f"{r['seeds']:>5} {r['test_mean']:>9.2f} +- "
              f"{r['test_std']:<4.2f} {r['val_mean']:>9.2f}")
    for o, comp in comparisons.items():
        for k, p in comp.items():
            print(f"{o} {k}: {p['mean']:+.2f} points, 95 % CI "
                  f"[{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}], better in "
                  f"{p['wins']} of {p['seeds']} seeds")
    print(f"{result['seconds']:.0f} s; {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
