"""Figures of the weight-norm dynamics that ``NormDynamicsHook`` records:
per-layer mean channel norm (Liu et al. 2021 Fig. 2/3), effective learning
rate lr/||w||^2 (Li et al. Fig. 2) and mean |cos(w, grad)| (Liu et al. 2021
Thm 3.1) over iterations."""
import os.path as osp
import re

from ..engine.norm_dynamics_hook import read_norm_dynamics

ROWS = (('norm_mean', 'mean channel norm ||w_j||',
         'log'), ('eff_lr', 'effective lr  lr / ||w_j||^2', 'log'),
        ('cos_abs_mean', 'mean |cos(w_j, grad_j)|', 'linear'))


def plot_norm_dynamics(work_dirs,
                       labels=None,
                       layers=None,
                       out='norm_dynamics.png',
                       file_name='norm_dynamics.jsonl') -> int:
    """One column per work dir, one row per statistic of :data:`ROWS`, one
    line per layer (``layers``: a regex selecting them); writes the figure to
    ``out`` and returns the number of layers drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = labels or [osp.basename(osp.normpath(d)) for d in work_dirs]
    pattern = re.compile(layers) if layers else None
    fig, axes = plt.subplots(
        len(ROWS),
        len(work_dirs),
        squeeze=False,
        figsize=(4.5 * len(work_dirs), 8.5),
        sharey='row')
    drawn = 0
    for col, (wd, label) in enumerate(zip(work_dirs, labels)):
        records = read_norm_dynamics(osp.join(wd, file_name))
        if not records:
            raise ValueError(f'{wd}: {file_name} has no records')
        names = [
            n for n in records[0]['layers']
            if pattern is None or pattern.search(n)
        ]
        its = [r['iter'] for r in records]
        cmap = plt.get_cmap('viridis')
        for row, (stat, title, scale) in enumerate(ROWS):
            ax = axes[row][col]
            for i, n in enumerate(names):
                ax.plot(
                    its, [r['layers'][n][stat] for r in records],
                    color=cmap(i / max(len(names) - 1, 1)),
                    lw=0.8)
            ax.set_yscale(scale)
            ax.set_title(f'{label}: {title}', fontsize=9)
            ax.set_xlabel('iteration')
        drawn = max(drawn, len(names))
    fig.suptitle(
        'per-layer weight dynamics (colour: layer depth)', fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return drawn
