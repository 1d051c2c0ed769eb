"""A paired study's reports: the runs' states (:func:`states_table`, what
``--collect-only`` prints), the comparison as Markdown
(:func:`markdown_table`), the metric's curves as a PNG (:func:`plot_curves`)
and all of them written to the work dir (:func:`write_report`)."""
import json
import os
import os.path as osp
import statistics
from typing import Dict, List

from .runs import RunState, RunStatus
from .stats import final_values, summarize


def states_table(states: List[RunStatus]) -> str:
    """:func:`.runs.run_states` as a markdown table: arm, seed, state, job,
    log (of the runs that failed or run)."""
    lines = ['| arm | seed | state | job | log |', '|---|---|---|---|---|']
    lines += [
        f"| {r.arm} | {r.seed} | {r.detail} | {r.job or '-'} | "
        f"{r.log if r.state in (RunState.FAILED, RunState.RUNNING) else '-'} |"
        for r in states
    ]
    return '\n'.join(lines)


def markdown_table(summary: dict) -> str:
    """The summary as a markdown table: one row per arm; the difference to
    the baseline reads ``n/a (1 seed)`` where the arm shares fewer than two
    seeds with it (no interval)."""
    m, base = summary['metric'], summary['baseline']
    lines = [
        f'| arm | seeds | {m} mean +- std | minus {base} [95 % CI] | '
        'better / ties / worse |', '|---|---|---|---|---|'
    ]
    for name, a in summary['arms'].items():
        p = a['vs_baseline']
        if p is None:
            diff, wins = '-', '-'
        elif len(p['seeds']) < 2:  # no interval from one paired seed
            diff = f"n/a ({len(p['seeds'])} seed)"
            wins = f"{p['wins']} / {p['ties']} / {p['losses']}"
        else:
            diff = (f"{p['mean']:+.2f} [{p['ci95'][0]:+.2f}, "
                    f"{p['ci95'][1]:+.2f}]")
            wins = f"{p['wins']} / {p['ties']} / {p['losses']}"
        lines.append(f"| {name} | {a['n']} | {a['mean']:.2f} +- "
                     f"{a['std']:.2f} | {diff} | {wins} |")
    return '\n'.join(lines)


def plot_curves(curves: Dict[str, Dict[int, list]],
                metric: str,
                out: str,
                title: str = '') -> None:
    """Mean +- std over seeds of each arm's metric curve."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, by_seed in curves.items():
        n = min(len(c) for c in by_seed.values())
        steps = [x for x, _ in next(iter(by_seed.values()))[:n]]
        cols = list(zip(*[[y for _, y in c[:n]] for c in by_seed.values()]))
        mean = [statistics.mean(c) for c in cols]
        line, = ax.plot(steps, mean, label=f'{name} ({len(by_seed)} seeds)')
        if len(by_seed) > 1:
            sd = [statistics.stdev(c) for c in cols]
            ax.fill_between(
                steps, [a - b for a, b in zip(mean, sd)],
                [a + b for a, b in zip(mean, sd)],
                color=line.get_color(),
                alpha=.2)
    ax.set_xlabel('step (epoch or iteration, as logged)')
    ax.set_ylabel(f'{metric}, mean +- std')
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_report(study: dict,
                 baseline: str,
                 metric: str,
                 out_dir: str,
                 title: str = '',
                 stem: str = 'paired_study') -> dict:
    """Final values of ``study['curves']`` compared against ``baseline``:
    writes ``<stem>.json``, ``<stem>.md`` and ``<stem>_curves.png`` to
    ``out_dir`` and returns the summary."""
    curves = study['curves']
    summary = summarize(final_values(curves), baseline, metric)
    summary.update(failed=study.get('failed', []), curves=curves)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, stem + '.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    table = markdown_table(summary)
    with open(osp.join(out_dir, stem + '.md'), 'w') as f:
        f.write((f'{title}\n\n' if title else '') + table + '\n')
    plot_curves(curves, metric, osp.join(out_dir, stem + '_curves.png'), title)
    return summary
