"""Li et al.'s stability claim (Table II / III, Fig. 6) at CPU scale: with
weight-standardised convs, plain (coupled) L2 shrinks the weights towards
zero, so the effective learning rate explodes and training degrades or fails;
the eps-shifted L2 keeps the weights' std at or above eps.

    python benchmarks/study_ws_shifted.py [--lambdas sgdm=5e-4,5e-3,5e-2
        adam=1e-3,1e-2,1e-1] [--seeds 1] [--decisive sgdm=5e-2 adam=1e-1]
        [--decisive-seeds 3] [--epochs 4] [--jobs 2]
        [--work-dir work_dirs/study_ws] [--out docs/study_ws_shifted.json]

Model and data as ``benchmarks/study_cifar10.py`` (VGG16-BN at width 1/8, the
CIFAR-10 subset, :func:`wrs_mm.testing.cifar_study.scale`) with every conv
weight-standardised (the shipped
``configs/classification/vgg16-ws-bn_sgdm-{l2,shifted-l2}_*`` configs:
``conv_cfg=dict(type='ConvWS')``, mmcv ``ConvWS2d``, each still followed by
BN). Per optimizer (SGDM lr 0.1, Adam lr 1e-3, both with L2 *coupled*, i.e.
added to the gradient, as the paper trains) and lambda, two arms on the same
seeds:

* ``l2``: ``weight_decay=lambda`` on every parameter;
* ``shifted``: the same, except that the WS convs get the eps-shifted L2
  (``paramwise_cfg.shifted_reg``, coupled, eps 1e-3 on the row std, the
  authors' WS form) instead.

Every (optimizer, lambda) is a :mod:`wrs_mm.apis.paired_study` (``shifted -
l2`` in test top-1, its table printed where it has 2 seeds or more). Per run
it also reports whether training failed (a non-finite training loss, or
final test accuracy below 15 %, chance being 10 %), the smallest row std of
any conv over training (``std_min``) and the largest effective lr (``eff_lr
= lr / ||w_j||^2``, layer mean) from ``NormDynamicsHook``. Writes
``--out``, a markdown table and ``<out>_fig6.png`` (those two over training
at the decisive lambdas, Li et al. Fig. 6 style) next to it.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time

from mmengine.config import Config

from wrs_mm.apis import paired_study as ps
from wrs_mm.engine.norm_dynamics_hook import read_norm_dynamics
from wrs_mm.testing import cifar_study, repo_root, small_scale

OPTIMIZERS = {
    'sgdm': dict(type='SGD', lr=0.1, momentum=0.9),
    'adam': dict(type='Adam', lr=1e-3),
}
CONFIGS = {  # the shipped weight-standardised VGG16-BN configs
    'l2': 'vgg16-ws-bn_sgdm-l2_1xb100-200e_cifar10.py',
    'shifted': 'vgg16-ws-bn_sgdm-shifted-l2_1xb100-200e_cifar10.py',
}
METRIC = 'test/top1'
CHANCE_LIMIT = 15.  # % test top-1 below which a run counts as failed


def ws_config(opt: str, reg: str, lam: float, args) -> Config:
    """The shipped WS config of ``reg`` at the study's scale, with the
    study's optimizer and lambda."""
    cfg = Config.fromfile(
        osp.join(repo_root(), 'configs', 'classification', CONFIGS[reg]))
    cifar_study.scale(cfg, args)
    cfg.optim_wrapper.optimizer = dict(OPTIMIZERS[opt], weight_decay=lam)
    if reg == 'shifted':
        cfg.optim_wrapper.paramwise_cfg.shifted_reg.eps = args.eps
    if args.test_every > 1 and not args.smoke:  # a subset, every epoch
        test = cfg.val_dataloader.dataset.datasets[1]
        n_test = sum(small_scale.dataset_class_sizes(test))
        test['indices'] = list(range(0, n_test, args.test_every))
    return cfg


def run_stats(work_dir: str) -> dict:
    """Failure flags, the smallest conv row std and the largest effective
    lr over training, from a finished run's work dir."""
    losses = [v for _, v in ps.read_curve(work_dir, 'loss')]
    top1 = ps.read_curve(work_dir, METRIC)
    path = osp.join(work_dir, 'norm_dynamics.jsonl')
    records = read_norm_dynamics(path) if osp.isfile(path) else []
    stds = [
        layer['std_min'] for r in records for layer in r['layers'].values()
    ]
    eff = [layer['eff_lr'] for r in records for layer in r['layers'].values()]
    final = top1[-1][1] if top1 else float('nan')
    non_finite = any(not math.isfinite(v) for v in losses) or \
        any(not math.isfinite(v) for v in stds + eff)
    return dict(
        test_top1=final,
        non_finite_loss=non_finite,
        failed=non_finite or not final >= CHANCE_LIMIT,
        std_min=min(stds) if stds else None,
        eff_lr_max=max(eff) if eff else None,
        iters=[r['iter'] for r in records],
        std_min_curve=[
            min(layer['std_min'] for layer in r['layers'].values())
            for r in records
        ],
        eff_lr_curve=[
            max(layer['eff_lr'] for layer in r['layers'].values())
            for r in records
        ])


def plot_fig6(records, decisive, out: str) -> None:
    """Li et al. Fig. 6 style: the smallest conv row std and the largest
    effective lr over training, L2 against eps-shifted L2, at each
    optimizer's decisive lambda (seed 0); nothing without one."""
    if not decisive:
        return
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(
        2, len(decisive), figsize=(5 * len(decisive), 6), squeeze=False)
    for col, (opt, lam) in enumerate(sorted(decisive)):
        for r in records:
            if (r['optimizer'], r['lam'], r['seed']) != (opt, lam, 0):
                continue
            for row, key, label in ((0, 'std_min_curve', 'smallest row std'),
                                    (1, 'eff_lr_curve',
                                     'largest eff. lr  lr / ||w_j||^2')):
                ax = axes[row][col]
                ax.semilogy(r['iters'], r[key], label=r['reg'])
                ax.set_ylabel(label)
                ax.set_title(f'{opt}, lambda {lam:g}', fontsize=9)
                ax.set_xlabel('iteration')
                ax.grid(alpha=.3)
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def parse_lambdas(items) -> dict:
    out = {}
    for item in items:
        opt, values = item.split('=')
        if opt not in OPTIMIZERS:
            raise ValueError(f'--lambdas: unknown optimizer {opt!r}; '
                             f'accepted: {sorted(OPTIMIZERS)}')
        out[opt] = [float(v) for v in values.split(',')]
    return out


def lambda_study(opt: str, lam: float, seeds: int, args) -> tuple:
    """L2 against eps-shifted L2 at ``lam``, paired over ``seeds`` seeds:
    the paired summary (None without an L2 result) and a record per run."""
    arms = [
        ps.dump_arm(f'{opt}_{reg}_lam{lam:g}', ws_config(opt, reg, lam, args),
                    args.work_dir) for reg in CONFIGS
    ]
    res = cifar_study.run(arms, list(range(seeds)), args, METRIC)
    summary = ps.summarize(
        ps.final_values(res['curves']), arms[0].name,
        METRIC) if arms[0].name in res['curves'] else None
    records = [
        dict(
            optimizer=opt,
            reg=reg,
            lam=lam,
            seed=s,
            **run_stats(ps.run_dir(args.work_dir, arm.name, s)))
        for reg, arm in zip(CONFIGS, arms) for s in range(seeds)
    ]
    return summary, records


def stats_table(records, lambdas: dict) -> str:
    """Per optimizer, lambda and regulariser: seeds, mean test top-1, failed
    runs, the smallest row std and the largest effective lr."""
    lines = [
        '| optimizer | lambda | reg | seeds | test top-1 (mean) | failed | '
        'smallest row std | largest eff. lr |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for opt, lams in lambdas.items():
        for lam in lams:
            for reg in CONFIGS:
                rs = [
                    r for r in records
                    if (r['optimizer'], r['lam'], r['reg']) == (opt, lam, reg)
                ]
                if not rs:
                    continue
                acc = sum(r['test_top1'] for r in rs) / len(rs)
                std = min(
                    (r['std_min'] for r in rs if r['std_min'] is not None),
                    default=float('nan'))
                eff = max((r['eff_lr_max']
                           for r in rs if r['eff_lr_max'] is not None),
                          default=float('nan'))
                lines.append(
                    f'| {opt} | {lam:g} | {reg} | {len(rs)} | {acc:.2f} | '
                    f"{sum(r['failed'] for r in rs)} / {len(rs)} | "
                    f'{std:.2e} | {eff:.3g} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument(
        '--lambdas',
        nargs='+',
        default=['sgdm=5e-4,5e-3,5e-2', 'adam=1e-3,1e-2,1e-1'],
        metavar='OPT=L1,L2,...')
    ap.add_argument('--seeds', type=int, default=1, help='sweep seeds')
    cifar_study.add_arguments(ap, 4, 'work_dirs/study_ws',
                              'docs/study_ws_shifted.json')
    ap.add_argument(
        '--decisive',
        nargs='*',
        default=['sgdm=5e-2', 'adam=1e-1'],
        metavar='OPT=L',
        help='lambdas run on --decisive-seeds seeds')
    ap.add_argument('--decisive-seeds', type=int, default=3)
    ap.add_argument('--eps', type=float, default=1e-3)
    ap.add_argument(
        '--test-every',
        type=int,
        default=2,
        help='evaluate on every N-th test image (--smoke: every 40th)')
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    lambdas = parse_lambdas(args.lambdas)
    decisive = {(o, float(v))
                for o, v in (d.split('=') for d in args.decisive)}
    t0 = time.time()
    records, studies = [], {}
    for opt, lams in lambdas.items():
        for lam in lams:
            seeds = args.decisive_seeds if (opt, lam) in decisive \
                else args.seeds
            studies[f'{opt}_lam{lam:g}'], got = lambda_study(
                opt, lam, seeds, args)
            records += got
    result = dict(
        seconds=time.time() - t0,
        args=vars(args),
        runs=records,
        paired=studies)
    stem = osp.splitext(args.out)[0]
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    table = stats_table(records, lambdas)
    plot_fig6(records, decisive, stem + '_fig6.png')
    with open(stem + '.md', 'w') as f:
        f.write(table + '\n')
    print(table)
    for key, s in studies.items():
        if s is not None and min(a['n'] for a in s['arms'].values()) > 1:
            print(f'\n{key}:\n{ps.markdown_table(s)}')
    print(f"{result['seconds']:.0f} s; {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
