"""Paired studies: every arm (a config, or a config with ``--cfg-options``)
trained on every seed through the project's own launchers, then compared
seed by seed against a baseline arm.

Seed ``s`` sets ``randomness.seed=s`` in every arm, so the arms of one seed
start from the same weights and see the same data order: the per-seed
difference ``arm - baseline`` removes the seed's luck, and its mean gets a
two-sided 95 % Student-t interval over seeds (``mean +- t_{0.975, n-1}
sd / sqrt(n)``). Runs live in ``<work_dir>/<arm>/seed<s>`` (one mmengine work
dir each); a finished run (its ``paired_study_run.json``) is never repeated,
so a study can be extended with seeds or arms, or only collected from work
dirs trained elsewhere (``collect_only``: any work dir whose
``vis_data/scalars.json`` holds the metric).

Launchers: ``'local'`` (``python tools/train.py``, ``jobs`` at a time),
``'pytorch'`` (``tools/dist_train.sh CONFIG GPUS``, a distinct ``PORT`` per
concurrent run) and ``'slurm'`` (``tools/slurm_train.sh PARTITION JOB CONFIG
WORK_DIR`` with ``GPUS``). ``dry_run`` prints the commands and runs nothing.
"""
import json
import os
import os.path as osp
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

LAUNCHERS = ('local', 'pytorch', 'slurm')
DONE_FILE = 'paired_study_run.json'


@dataclass
class Arm:
    """One arm: a config file plus ``--cfg-options`` (``'key=value'``
    strings, mmengine's syntax) applied on every seed."""
    name: str
    config: str
    cfg_options: List[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.name or os.sep in self.name:
            raise ValueError(f'paired study: arm name {self.name!r} must be '
                             'a non-empty folder name')
        bad = [o for o in self.cfg_options if '=' not in o]
        if bad:
            raise ValueError(f'paired study: arm {self.name!r}: cfg options '
                             f'must be key=value, got {bad}')


def run_dir(work_dir: str, arm: str, seed: int) -> str:
    return osp.join(work_dir, arm, f'seed{seed}')


def train_command(arm: Arm,
                  seed: int,
                  work_dir: str,
                  tools_dir: str,
                  launcher: str = 'local',
                  gpus: int = 1,
                  partition: Optional[str] = None) -> List[str]:
    """The command line that trains ``arm`` on ``seed`` into ``work_dir``."""
    options = ['--cfg-options', f'randomness.seed={seed}', *arm.cfg_options]
    if launcher == 'local':
        return [
            sys.executable,
            osp.join(tools_dir, 'train.py'), arm.config, '--work-dir',
            work_dir, *options
        ]
    if launcher == 'pytorch':
        return [
            'bash',
            osp.join(tools_dir, 'dist_train.sh'), arm.config,
            str(gpus), '--work-dir', work_dir, *options
        ]
    if launcher == 'slurm':
        if not partition:
            raise ValueError('paired study: launcher "slurm" needs a '
                             'partition (--partition)')
        return [
            'bash',
            osp.join(tools_dir, 'slurm_train.sh'), partition,
            f'{arm.name}_seed{seed}', arm.config, work_dir, *options
        ]
    raise ValueError(f'paired study: launcher must be one of {LAUNCHERS}, '
                     f'got {launcher!r}')


def read_curve(work_dir: str, metric: str) -> List[List[float]]:
    """``[[step, value], ...]`` of ``metric`` in the newest run of an mmengine
    work dir (``<timestamp>/vis_data/scalars.json``); [] when absent."""
    if not osp.isdir(work_dir):
        return []
    stamps = sorted(
        d for d in os.listdir(work_dir)
        if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    if not stamps:
        return []
    curve = []
    with open(osp.join(work_dir, stamps[-1], 'vis_data', 'scalars.json')) as f:
        for line in f:
            rec = json.loads(line)
            if metric in rec:
                curve.append([rec.get('step', len(curve)), rec[metric]])
    return curve


def run_study(arms: Sequence[Arm],
              seeds: Sequence[int],
              work_dir: str,
              metric: str,
              launcher: str = 'local',
              jobs: int = 1,
              gpus: int = 1,
              partition: Optional[str] = None,
              tools_dir: Optional[str] = None,
              collect_only: bool = False,
              dry_run: bool = False,
              env: Optional[dict] = None,
              log: Callable[[str], None] = print) -> dict:
    """Train what is not yet trained (unless ``collect_only``) and return
    ``{'curves': {arm: {seed: curve}}, 'failed': [...], 'commands': [...]}``
    (``curves`` without the runs that failed or hold no ``metric``)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'paired study: launcher must be one of '
                         f'{LAUNCHERS}, got {launcher!r}')
    names = [a.name for a in arms]
    if len(set(names)) != len(names) or not arms:
        raise ValueError('paired study: give arms with distinct names, got '
                         f'{names}')
    if not seeds:
        raise ValueError('paired study: give at least one seed')
    if tools_dir is None:
        from ..testing import repo_root
        tools_dir = osp.join(repo_root(), 'tools')
    todo, commands = [], []
    for arm in arms:
        for s in seeds:
            wd = osp.abspath(run_dir(work_dir, arm.name, s))
            cmd = train_command(arm, s, wd, tools_dir, launcher, gpus,
                                partition)
            commands.append(shlex.join(cmd))
            if not collect_only and not osp.isfile(osp.join(wd, DONE_FILE)):
                todo.append((arm, s, wd, cmd))
    if dry_run:
        for c in commands:
            log(c)
        return dict(curves={}, failed=[], commands=commands)

    failed = []

    def train(job) -> None:
        i, (arm, s, wd, cmd) = job
        os.makedirs(wd, exist_ok=True)
        run_env = dict(os.environ, **(env or {}))
        if launcher == 'pytorch':
            run_env['PORT'] = str(29500 + i % max(jobs, 1))
        if launcher == 'slurm':
            run_env['GPUS'] = str(gpus)
        t0 = time.time()
        with open(osp.join(wd, 'paired_study_train.log'), 'w') as out:
            rc = subprocess.run(
                cmd, env=run_env, stdout=out,
                stderr=subprocess.STDOUT).returncode
        secs = time.time() - t0
        if rc:
            failed.append(dict(arm=arm.name, seed=s, returncode=rc))
            log(f'{arm.name} seed {s}: FAILED (exit {rc}), see '
                f'{wd}/paired_study_train.log')
            return
        with open(osp.join(wd, DONE_FILE), 'w') as f:
            json.dump(dict(command=cmd, seconds=secs), f)
        last = read_curve(wd, metric)
        log(f'{arm.name} seed {s}: {metric} '
            f"{last[-1][1] if last else 'missing'} ({secs:.0f} s)")

    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        list(pool.map(train, enumerate(todo)))
    curves: Dict[str, Dict[int, list]] = {}
    for arm in arms:
        for s in seeds:
            c = read_curve(run_dir(work_dir, arm.name, s), metric)
            if c:
                curves.setdefault(arm.name, {})[s] = c
    return dict(curves=curves, failed=failed, commands=commands)


def paired_difference(values: Dict[int, float], baseline: Dict[int,
                                                               float]) -> dict:
    """Mean of ``values[s] - baseline[s]`` over the seeds both have, with a
    two-sided 95 % t interval (NaN for one seed), wins / ties / losses."""
    seeds = sorted(set(values) & set(baseline))
    d = [values[s] - baseline[s] for s in seeds]
    n = len(d)
    mean = statistics.mean(d) if d else float('nan')
    sd = statistics.stdev(d) if n > 1 else 0.
    if n > 1:
        from scipy import stats
        half = float(stats.t.ppf(0.975, n - 1)) * sd / n**.5
    else:
        half = float('nan')
    return dict(
        mean=mean,
        std=sd,
        ci95=[mean - half, mean + half],
        wins=sum(x > 0 for x in d),
        ties=sum(x == 0 for x in d),
        losses=sum(x < 0 for x in d),
        seeds=seeds,
        diffs=d)


def summarize(finals: Dict[str, Dict[int, float]], baseline: str,
              metric: str) -> dict:
    """Per arm: its per-seed final values, mean / std, and the paired
    difference to ``baseline``."""
    if baseline not in finals:
        raise ValueError(f'paired study: baseline arm {baseline!r} has no '
                         f'results; arms with results: {sorted(finals)}')
    arms = {}
    for name, vals in finals.items():
        v = list(vals.values())
        arms[name] = dict(
            values={
                str(s): x
                for s, x in sorted(vals.items())
            },
            mean=statistics.mean(v),
            std=statistics.stdev(v) if len(v) > 1 else 0.,
            n=len(v),
            vs_baseline=None if name == baseline else paired_difference(
                vals, finals[baseline]))
    return dict(metric=metric, baseline=baseline, arms=arms)


def markdown_table(summary: dict) -> str:
    """The summary as a markdown table: one row per arm."""
    m, base = summary['metric'], summary['baseline']
    rows = [
        f'| arm | seeds | {m} mean +- std | minus {base} [95 % CI] | '
        'better / ties / worse |', '|---|---|---|---|---|'
    ]
    for name, a in summary['arms'].items():
        p = a['vs_baseline']
        if p is None:
            diff, wins = '-', '-'
        else:
            diff = (f"{p['mean']:+.2f} [{p['ci95'][0]:+.2f}, "
                    f"{p['ci95'][1]:+.2f}]")
            wins = f"{p['wins']} / {p['ties']} / {p['losses']}"
        rows.append(f"| {name} | {a['n']} | {a['mean']:.2f} +- "
                    f"{a['std']:.2f} | {diff} | {wins} |")
    return '\n'.join(rows)


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
    finals = {
        a: {
            s: c[-1][1]
            for s, c in by_seed.items()
        }
        for a, by_seed in curves.items()
    }
    summary = summarize(finals, baseline, metric)
    summary.update(failed=study.get('failed', []), curves=curves)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, stem + '.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    table = markdown_table(summary)
    with open(osp.join(out_dir, stem + '.md'), 'w') as f:
        f.write((f'{title}\n\n' if title else '') + table + '\n')
    plot_curves(curves, metric, osp.join(out_dir, stem + '_curves.png'), title)
    return summary
