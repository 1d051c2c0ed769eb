"""Paired studies: every arm (a config, or a config with ``--cfg-options``)
trained on every seed through the project's own launchers, then compared
seed by seed against a baseline arm.

Seed ``s`` sets ``randomness.seed=s`` in every arm, so the arms of one seed
start from the same weights and see the same data order: the per-seed
difference ``arm - baseline`` removes the seed's luck, and its mean gets a
two-sided 95 % Student-t interval over seeds (``mean +- t_{0.975, n-1}
sd / sqrt(n)``). An arm trains on the study's seeds or on its own
(``Arm.seeds``). Runs live in ``<work_dir>/<arm>/seed<s>`` (one mmengine work
dir each); a finished run (its ``paired_study_run.json``) is never repeated,
so a study can be extended with seeds or arms, or only collected from work
dirs trained elsewhere (``collect_only``: any work dir whose
``vis_data/scalars.json`` holds the metric). :func:`reuse_runs` adds the
results of an earlier study to this one's and says whether the runs both
trained agree.

Launchers: ``'local'`` (``python tools/train.py``, ``jobs`` at a time),
``'pytorch'`` (``tools/dist_train.sh CONFIG GPUS``, a distinct ``PORT`` per
concurrent run) and ``'slurm'``: each run is submitted with ``sbatch`` as a
job that runs ``tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR`` with
``GPUS`` (:mod:`.slurm_jobs`), and the call returns at once (or, with
``wait``, when the jobs have left the queue). The job ids go to
``<work_dir>/paired_study_manifest.json``; a run still queued is not
submitted again. A run that was killed, failed or timed out is trained again
from its last checkpoint (``--resume``), with every launcher. ``dry_run``
prints the commands and runs nothing.

Each run has a state (:func:`run_states`): ``done`` (its done file),
``running`` / ``pending`` (its job in the queue), ``failed`` (started, not
done, not queued) or ``missing`` (never started). Only runs that are done,
or work dirs this module did not start (``collect_only`` on runs trained
elsewhere), enter the comparison.
"""
import json
import os
import os.path as osp
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from . import slurm_jobs

LAUNCHERS = ('local', 'pytorch', 'slurm')
DONE_FILE = 'paired_study_run.json'
LOG_FILE = 'paired_study_train.log'
MANIFEST = 'paired_study_manifest.json'


@dataclass
class Arm:
    """One arm: a config file plus ``--cfg-options`` (``'key=value'``
    strings, mmengine's syntax) applied on every seed; ``seeds``: the seeds
    this arm trains on (None: the study's)."""
    name: str
    config: str
    cfg_options: List[str] = field(default_factory=list)
    seeds: Optional[List[int]] = None

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


def dump_arm(name: str,
             cfg,
             work_dir: str,
             seeds: Optional[List[int]] = None) -> Arm:
    """An arm of the mmengine ``Config`` ``cfg``, dumped to
    ``<work_dir>/configs/<name>.py``, on ``seeds`` (None: the study's)."""
    path = osp.abspath(osp.join(work_dir, 'configs', name + '.py'))
    os.makedirs(osp.dirname(path), exist_ok=True)
    cfg.dump(path)
    return Arm(name, path, seeds=seeds)


def train_command(arm: Arm,
                  seed: int,
                  work_dir: str,
                  tools_dir: str,
                  launcher: str = 'local',
                  gpus: int = 1,
                  partition: Optional[str] = None,
                  resume: bool = False) -> List[str]:
    """The command line that trains ``arm`` on ``seed`` into ``work_dir``;
    ``resume``: from the work dir's last checkpoint."""
    options = [
        *(['--resume'] if resume else []), '--cfg-options',
        f'randomness.seed={seed}', *arm.cfg_options
    ]
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
    """``[[step, value], ...]`` of ``metric`` in an mmengine work dir
    (``<timestamp>/vis_data/scalars.json`` of each start of the run, oldest
    first: a resumed start's values replace those of the steps it
    repeats); [] when absent."""
    if not osp.isdir(work_dir):
        return []
    stamps = sorted(
        d for d in os.listdir(work_dir)
        if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    curve: List[List[float]] = []
    for stamp in stamps:
        part = []
        with open(osp.join(work_dir, stamp, 'vis_data', 'scalars.json')) as f:
            for line in f:
                rec = json.loads(line)
                if metric in rec:
                    part.append([rec.get('step', len(part)), rec[metric]])
        if part:
            curve = [c for c in curve if c[0] < part[0][0]] + part
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
              wait: bool = False,
              env: Optional[dict] = None,
              log: Callable[[str], None] = print) -> dict:
    """Train (or submit) what is not done, unless ``collect_only``; return
    ``{'curves': {arm: {seed: curve}}, 'failed': [...], 'commands': [...],
    'states': [...]}`` (``curves`` of the runs that count, see the module
    docstring; ``states`` as :func:`run_states`)."""
    _check_study(arms, seeds, launcher)
    tools_dir = tools_dir or package_tools()
    runs = [(arm, s, osp.abspath(run_dir(work_dir, arm.name, s)))
            for arm in arms
            for s in (seeds if arm.seeds is None else arm.seeds)]
    commands = [
        shlex.join(
            train_command(arm, s, wd, tools_dir, launcher, gpus, partition))
        for arm, s, wd in runs
    ]
    if dry_run:
        for c in commands:
            log(c)
        return dict(curves={}, failed=[], commands=commands, states=[])
    run_env = dict(os.environ, **(env or {}))
    todo = [] if collect_only else [
        r for r in runs if not osp.isfile(osp.join(r[2], DONE_FILE))
    ]
    failed = []
    if launcher == 'slurm':
        submit_slurm(todo, work_dir, tools_dir, gpus, partition, run_env, log)
        if wait:
            wait_for_jobs(work_dir, run_env)
    else:
        failed = train_here(todo, launcher, jobs, gpus, tools_dir, metric,
                            run_env, log)
    states = run_states(runs, work_dir, run_env)
    if launcher == 'slurm' or collect_only:
        failed = [
            dict(arm=r['arm'], seed=r['seed'], log=r['log']) for r in states
            if r['state'] == 'failed'
        ]
    return dict(
        curves=_counted_curves(runs, states, metric),
        failed=failed,
        commands=commands,
        states=states)


def _check_study(arms: Sequence[Arm], seeds: Sequence[int],
                 launcher: str) -> None:
    if launcher not in LAUNCHERS:
        raise ValueError(f'paired study: launcher must be one of '
                         f'{LAUNCHERS}, got {launcher!r}')
    names = [a.name for a in arms]
    if len(set(names)) != len(names) or not arms:
        raise ValueError('paired study: give arms with distinct names, got '
                         f'{names}')
    if any(not (seeds if a.seeds is None else a.seeds) for a in arms):
        raise ValueError('paired study: give at least one seed to every arm '
                         '(the study\'s seeds, or the arm\'s own)')


def _counted_curves(runs, states, metric: str) -> Dict[str, Dict[int, list]]:
    """``{arm: {seed: curve}}`` of the runs that count (done, or finished
    outside the study)."""
    counted = {(r['arm'], r['seed'])
               for r in states if r['state'] in ('done', 'foreign')}
    curves: Dict[str, Dict[int, list]] = {}
    for arm, s, wd in runs:
        c = read_curve(wd, metric) if (arm.name, s) in counted else []
        if c:
            curves.setdefault(arm.name, {})[s] = c
    return curves


def package_tools() -> str:
    """wrs_mm's ``tools/`` as installed: ``wrs_mm/.mim/tools`` (links into
    the checkout for an editable install; setup.py)."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    return osp.join(package, '.mim', 'tools')


def train_here(todo, launcher: str, jobs: int, gpus: int, tools_dir: str,
               metric: str, run_env: dict, log: Callable) -> List[dict]:
    """Train ``todo`` (``(arm, seed, work dir)``) with the local or pytorch
    launcher, ``jobs`` at a time, each resumed from its last checkpoint if it
    has one; the runs that failed."""
    failed = []

    def train(job) -> None:
        i, (arm, s, wd) = job
        os.makedirs(wd, exist_ok=True)
        resume = has_checkpoint(wd)
        cmd = train_command(arm, s, wd, tools_dir, launcher, gpus, None,
                            resume)
        env = dict(run_env)
        if launcher == 'pytorch':
            env['PORT'] = str(29500 + i % max(jobs, 1))
        t0 = time.time()
        with open(osp.join(wd, LOG_FILE), 'a') as out:
            rc = subprocess.run(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        secs = time.time() - t0
        if rc:
            failed.append(dict(arm=arm.name, seed=s, returncode=rc))
            log(f'{arm.name} seed {s}: FAILED (exit {rc}), see '
                f'{wd}/{LOG_FILE}')
            return
        with open(osp.join(wd, DONE_FILE), 'w') as f:
            json.dump(dict(command=cmd, seconds=secs), f)
        last = read_curve(wd, metric)
        log(f'{arm.name} seed {s}: {metric} '
            f"{last[-1][1] if last else 'missing'} ({secs:.0f} s)"
            f"{' (resumed)' if resume else ''}")

    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        list(pool.map(train, enumerate(todo)))
    return failed


def has_checkpoint(work_dir: str) -> bool:
    """Whether a run's work dir holds a checkpoint to resume from."""
    return osp.isfile(osp.join(work_dir, slurm_jobs.CHECKPOINT_POINTER))


def read_manifest(work_dir: str) -> Dict[str, dict]:
    """``{'<arm>/seed<s>': entry}`` of the study's submitted jobs."""
    path = osp.join(work_dir, MANIFEST)
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return {f"{r['arm']}/seed{r['seed']}": r for r in json.load(f)}


def submit_slurm(todo, work_dir: str, tools_dir: str, gpus: int,
                 partition: Optional[str], run_env: dict,
                 log: Callable) -> None:
    """``sbatch`` each run of ``todo`` whose last job is not queued; record
    the job ids in the manifest (arm, seed, job ids, command, script, log)."""
    if not partition:
        raise ValueError('paired study: launcher "slurm" needs a partition '
                         '(--partition)')
    resources = slurm_jobs.slurm_resources(gpus, run_env)
    manifest = read_manifest(work_dir)
    queued = slurm_jobs.queued_jobs(run_env) if todo else {}
    for arm, s, wd in todo:
        entry = manifest.get(f'{arm.name}/seed{s}')
        if entry and entry['job_ids'][-1] in queued:
            log(f"{arm.name} seed {s}: job {entry['job_ids'][-1]} "
                f"{queued[entry['job_ids'][-1]]}")
            continue
        os.makedirs(wd, exist_ok=True)
        cmd = train_command(arm, s, wd, tools_dir, 'slurm', gpus, partition)
        script = osp.join(wd, 'paired_study_job.sh')
        with open(script, 'w') as f:
            f.write(
                slurm_jobs.job_script(cmd, f'{arm.name}_seed{s}', partition,
                                      resources, osp.join(wd, LOG_FILE),
                                      osp.join(wd, DONE_FILE), wd))
        job = slurm_jobs.sbatch(script, run_env)
        resumed = has_checkpoint(wd)
        entry = entry or dict(
            arm=arm.name,
            seed=s,
            job_ids=[],
            command=shlex.join(cmd),
            script=script,
            log=osp.join(wd, LOG_FILE))
        entry['job_ids'].append(job)
        manifest[f'{arm.name}/seed{s}'] = entry
        log(f'{arm.name} seed {s}: submitted job {job}'
            f"{' (resumes from its last checkpoint)' if resumed else ''}")
        os.makedirs(work_dir, exist_ok=True)
        with open(osp.join(work_dir, MANIFEST), 'w') as f:
            json.dump(list(manifest.values()), f, indent=1)


def wait_for_jobs(work_dir: str, run_env: dict, poll: float = 5.) -> None:
    """Until no job of the study's manifest is queued."""
    ids = {e['job_ids'][-1] for e in read_manifest(work_dir).values()}
    while ids & set(slurm_jobs.queued_jobs(run_env)):
        time.sleep(poll)


def run_states(runs, work_dir: str, run_env: Optional[dict] = None) -> list:
    """Per run ``(arm, seed, work dir)``: ``dict(arm, seed, state, detail,
    job, log)``, the state one of ``done``, ``running``, ``pending``,
    ``failed`` (``detail``: how its job ended, when Slurm still knows),
    ``missing`` (never started), ``unknown`` (submitted, but no ``squeue``
    here) or ``foreign`` (a work dir with results that this module did not
    start: counted as done)."""
    manifest = read_manifest(work_dir)
    squeue = manifest and shutil.which(
        'squeue', path=(run_env or os.environ).get('PATH'))
    queued = slurm_jobs.queued_jobs(run_env) if squeue else {}
    out = []
    for arm, s, wd in runs:
        entry = manifest.get(f'{arm.name}/seed{s}')
        job = entry['job_ids'][-1] if entry else None
        started = entry or osp.isfile(osp.join(wd, LOG_FILE))
        if osp.isfile(osp.join(wd, DONE_FILE)):
            state = 'done'
        elif job in queued:
            state = queued[job]
        elif job and not squeue:
            state = 'unknown (submitted; no squeue on this machine)'
        elif started:
            ended = slurm_jobs.ended_state(job, run_env) if job else None
            state = f'failed ({ended})' if ended else 'failed'
        elif osp.isdir(wd) and read_curve(wd, 'step'):
            state = 'foreign'
        else:
            state = 'missing'
        out.append(
            dict(
                arm=arm.name,
                seed=s,
                state=state.split(' ')[0],
                detail=state,
                job=job,
                log=osp.join(wd, LOG_FILE)))
    return out


def states_table(states: list) -> str:
    """:func:`run_states` as a markdown table: arm, seed, state, job, log."""
    lines = ['| arm | seed | state | job | log |', '|---|---|---|---|---|']
    lines += [
        f"| {r['arm']} | {r['seed']} | {r['detail']} | {r['job'] or '-'} | "
        f"{r['log'] if r['state'] in ('failed', 'running') else '-'} |"
        for r in states
    ]
    return '\n'.join(lines)


def cancel_study(work_dir: str, env: Optional[dict] = None) -> List[str]:
    """``scancel`` the study's jobs that are still queued; their ids."""
    queued = slurm_jobs.queued_jobs(env)
    jobs = [
        e['job_ids'][-1] for e in read_manifest(work_dir).values()
        if e['job_ids'][-1] in queued
    ]
    slurm_jobs.cancel(jobs, env)
    return jobs


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


def final_values(curves: Dict[str, Dict[int, list]]) -> Dict[str, dict]:
    """``{arm: {seed: last value}}`` of ``{arm: {seed: curve}}``."""
    return {
        a: {
            s: c[-1][1]
            for s, c in by_seed.items()
        }
        for a, by_seed in curves.items()
    }


def reuse_runs(curves: Dict[str, Dict[int, list]],
               previous: Dict[str, Dict[int, list]]) -> tuple:
    """``curves`` with the runs of ``previous`` (the curves of an earlier
    study of the same arms) that it lacks, and ``{'<arm>_seed<s>': largest
    difference}`` of the runs both have (0 when training is bitwise
    reproducible)."""
    merged = {a: dict(by_seed) for a, by_seed in curves.items()}
    reproduced = {}
    for arm, by_seed in previous.items():
        for s, old in by_seed.items():
            mine = merged.setdefault(arm, {}).get(s)
            if mine is None:
                merged[arm][s] = old
            else:
                reproduced[f'{arm}_seed{s}'] = max(
                    abs(x[1] - y[1]) for x, y in zip(mine, old))
    return merged, reproduced


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
