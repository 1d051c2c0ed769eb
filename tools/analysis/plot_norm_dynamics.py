"""Plot the weight-norm dynamics recorded by ``NormDynamicsHook``.

    python tools/analysis/plot_norm_dynamics.py WORK_DIR [WORK_DIR ...]
        [--labels WD WRS] [--layers REGEX] [--out norm_dynamics.png]

One column per work dir (e.g. WD vs WRS vs none side by side), three rows:
per-layer mean channel norm over iterations (000 Fig. 2/3), effective learning
rate lr/||w||^2 (001 Fig. 2) and mean |cos(w, grad)| (000 Thm 3.1).
"""
import argparse
import os.path as osp
import re
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
from wrs_mm.engine.norm_dynamics_hook import read_norm_dynamics  # noqa: E402

ROWS = (('norm_mean', 'mean channel norm ||w_j||', 'log'),
        ('eff_lr', 'effective lr  lr / ||w_j||^2', 'log'),
        ('cos_abs_mean', 'mean |cos(w_j, grad_j)|', 'linear'))


def plot(work_dirs, labels=None, layers=None, out='norm_dynamics.png',
         file_name='norm_dynamics.jsonl'):
    """Write the figure to ``out``; returns the number of layers drawn."""
    labels = labels or [osp.basename(osp.normpath(d)) for d in work_dirs]
    pattern = re.compile(layers) if layers else None
    fig, axes = plt.subplots(len(ROWS), len(work_dirs), squeeze=False,
                             figsize=(4.5 * len(work_dirs), 8.5),
                             sharey='row')
    drawn = 0
    for col, (wd, label) in enumerate(zip(work_dirs, labels)):
        records = read_norm_dynamics(osp.join(wd, file_name))
        if not records:
            raise ValueError(f'{wd}: {file_name} has no records')
        names = [n for n in records[0]['layers']
                 if pattern is None or pattern.search(n)]
        its = [r['iter'] for r in records]
        cmap = plt.get_cmap('viridis')
        for row, (stat, title, scale) in enumerate(ROWS):
            ax = axes[row][col]
            for i, n in enumerate(names):
                ax.plot(its, [r['layers'][n][stat] for r in records],
                        color=cmap(i / max(len(names) - 1, 1)), lw=0.8)
            ax.set_yscale(scale)
            ax.set_title(f'{label}: {title}', fontsize=9)
            ax.set_xlabel('iteration')
        drawn = max(drawn, len(names))
    fig.suptitle('per-layer weight dynamics (colour: layer depth)',
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return drawn


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('work_dirs', nargs='+')
    ap.add_argument('--labels', nargs='+')
    ap.add_argument('--layers', help='regex selecting the layers to draw')
    ap.add_argument('--out', default='norm_dynamics.png')
    args = ap.parse_args()
    if args.labels and len(args.labels) != len(args.work_dirs):
        ap.error('--labels needs one label per work dir')
    n = plot(args.work_dirs, args.labels, args.layers, args.out)
    print(f'{args.out}: {n} layers x {len(args.work_dirs)} runs')


if __name__ == '__main__':
    main()
