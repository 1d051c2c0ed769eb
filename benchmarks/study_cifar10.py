"""Liu et al. 2021's classification comparison (Table 1, Fig. 1) at CPU
scale, and the ablations that explain it, on a 20,000-image CIFAR-10 subset: a
:mod:`wrs_mm.apis.paired_study` over arms built from the shipped configs.

    python benchmarks/study_cifar10.py [--seeds 5] [--epochs 12]
        [--arms wd wrs wrs_init wrs_fc shifted none] [--max-seeds ARM=N ...]
        [--tau adamw=20 sgdm=10] [--previous OLD.json] [--jobs 2]
        [--work-dir work_dirs/study_cifar10] [--out docs/study_cifar10.json]
        [--collect-only] [--smoke]

Every arm is a shipped config (``configs/classification/vgg16-bn_*``: the WD
config or its WRS twin, exactly as a user writes them) at the scale of
:func:`wrs_mm.testing.cifar_study.scale`, dumped to
``<work-dir>/configs/<opt>_<arm>.py`` and trained by ``tools/train.py``
through the paired-study runner:

* data: the training images of ``--data-root`` (default ``$WRS_MM_DATA``:
  ``cifar10_subset``, 2,000 a class, 20,000 in all; or CIFAR-10's own
  batches, 5,000 a class) minus the last 200 of each class, held out as the
  validation split (tau is chosen on it, never on the test set); all its test
  images (10,000). Both are evaluated after every epoch (``Accuracy``
  metrics tagged ``val`` / ``test``). The clone's ``sample_data/`` (50 a
  class) serves ``--smoke`` only;
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
epochs, width, holdout, and for the ``wrs*`` arms the same tau), and on the
seeds both trained the two results are compared (``reproduced``: the largest
difference of the test curves, 0 when CPU training is bitwise reproducible;
:func:`wrs_mm.apis.paired_study.reuse_runs`).

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
from wrs_mm.testing import cifar_study, repo_root

TAUS = (10, 20, 40)
ARMS = ('wd', 'wrs', 'wrs_init', 'wrs_fc', 'shifted', 'none')
CONFIGS = {
    'sgdm': ('vgg16-bn_sgdm-wd_1xb100-200e_cifar10.py',
             'vgg16-bn_sgdm-wrs-tau40_1xb100-200e_cifar10.py'),
    'adamw': ('vgg16-bn_adamw-wd_1xb100-200e_cifar10.py',
              'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py'),
}
METRIC = 'test/top1'
#: the arms drawn in the norm-dynamics figure
NORM_PLOT_ARMS = ('none', 'wd', 'wrs', 'wrs_init')


def study_config(opt: str, arm: str, args, tau: int = None) -> Config:
    """The shipped config of ``opt`` / ``arm`` at the study's scale (see the
    module docstring); the seed is set per run."""
    wd_cfg, wrs_cfg = CONFIGS[opt]
    wrs = arm.startswith('wrs')
    cfg = Config.fromfile(
        osp.join(repo_root(), 'configs', 'classification',
                 wrs_cfg if wrs else wd_cfg))
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
    return cifar_study.scale(cfg, args)


def arm_name(opt: str, arm: str, tau: int = None) -> str:
    return f'{opt}_{arm}' + (f'_tau{tau}' if arm == 'wrs' else '')


def make_arm(opt: str, arm: str, args, tau: int = None, seeds=None) -> ps.Arm:
    """The arm's config dumped under ``<work-dir>/configs``, trained on
    ``seeds`` (None: the study's)."""
    return ps.dump_arm(
        arm_name(opt, arm, tau), study_config(opt, arm, args, tau),
        args.work_dir, seeds)


def select_tau(opt: str, args) -> tuple:
    """tau with the best seed-0 validation accuracy, and every tau's."""
    arms = [make_arm(opt, 'wrs', args, t) for t in TAUS]
    curves = cifar_study.run(arms, [0], args, 'val/top1')['curves']
    val = {t: curves[a.name][0][-1][1] for t, a in zip(TAUS, arms)}
    return max(TAUS, key=val.get), val


def previous_curves(path: str, args, opt: str, tau: int) -> dict:
    """``{arm name: {seed: test curve}}`` of ``opt`` in an earlier run of
    this script with the same epochs / width / holdout: this run's arms and
    seeds, the ``wrs*`` arms only at this run's ``tau``."""
    if not path:
        return {}
    with open(path) as f:
        old = json.load(f)
    if any(old['args'][k] != getattr(args, k)
           for k in ('epochs', 'width', 'holdout')):
        raise ValueError(f'--previous {path}: trained with other epochs / '
                         'width / holdout than this run')
    curves: dict = {}
    for r in old['runs']:
        if (r['optimizer'] == opt and r['arm'] in args.arms
                and r['seed'] < args.seeds
                and (not r['arm'].startswith('wrs') or r['tau'] == tau)):
            curves.setdefault(
                arm_name(opt, r['arm'], tau),
                {})[r['seed']] = [[i + 1, v] for i, v in enumerate(r['test'])]
    return curves


def arm_seeds(opt: str, arm: str, tau: int, args) -> list:
    """The seeds ``arm`` trains on: the first ``--max-seeds`` N of them."""
    limits = dict(kv.split('=') for kv in args.max_seeds)
    n = limits.get(arm_name(opt, arm, tau), limits.get(arm, args.seeds))
    return list(range(min(args.seeds, int(n))))


def compare(opt: str, tau: int, args) -> tuple:
    """Train ``opt``'s arms (each on its ``--max-seeds``), add the
    ``--previous`` runs, write the report; the summary and the run
    records."""
    arms = {
        short: make_arm(opt, short, args, tau,
                        arm_seeds(opt, short, tau, args))
        for short in args.arms
    }
    old = previous_curves(args.previous, args, opt, tau)
    trained = cifar_study.run(list(arms.values()), [], args, METRIC)['curves']
    curves, reproduced = ps.reuse_runs(trained, old)
    summary = ps.write_report(
        dict(curves=curves),
        f'{opt}_wd',
        METRIC,
        osp.dirname(osp.abspath(args.out)),
        title=f'VGG16-BN (width {args.width}), {opt.upper()}, '
        f'{args.epochs} epochs, CIFAR-10 subset',
        stem=osp.splitext(osp.basename(args.out))[0] + f'_{opt}')
    summary['reproduced'] = reproduced
    runs = [
        dict(
            optimizer=opt,
            arm=short,
            seed=s,
            tau=tau if short.startswith('wrs') else None,
            test=[v for _, v in curves[a.name][s]],
            reused=s not in trained.get(a.name, {}))
        for short, a in arms.items() for s in range(args.seeds)
        if s in curves.get(a.name, {})
    ]
    return summary, runs


def plot_norms(arms, args) -> None:
    """Conv norms and effective lr of the seed-0 runs of the
    :data:`NORM_PLOT_ARMS` among ``arms``, to ``<out>_norms.png``."""
    dirs = [
        ps.run_dir(args.work_dir, name, 0) for name in arms
        if name.split('_', 1)[1].split('_tau')[0] in NORM_PLOT_ARMS
    ]
    dirs = [d for d in dirs if osp.isdir(d)]
    plot_norm_dynamics(
        dirs,
        labels=[f'{d.split(os.sep)[-2]} (seed 0)' for d in dirs],
        out=osp.splitext(args.out)[0] + '_norms.png')


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=5)
    cifar_study.add_arguments(ap, 12, 'work_dirs/study_cifar10',
                              'docs/study_cifar10.json')
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
    args = ap.parse_args(argv)
    if 'wd' not in args.arms:
        ap.error('--arms must include wd, the baseline')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    taus = {k: int(v) for k, v in (kv.split('=') for kv in args.tau)}
    t0 = time.time()
    result = dict(args=vars(args), tau_selection_val={}, best_tau={})
    summaries, runs = {}, []
    for opt in args.optimizers:
        if opt not in taus and any(a.startswith('wrs') for a in args.arms):
            taus[opt], result['tau_selection_val'][opt] = select_tau(opt, args)
        result['best_tau'][opt] = taus.get(opt)
        summaries[opt], opt_runs = compare(opt, taus.get(opt), args)
        runs += opt_runs
    plot_norms(summaries[args.optimizers[0]]['arms'], args)
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
