"""A paired study from start to end (:func:`run_study`): plan the runs,
launch what is not done, then collect every run's state and the curves of
the runs that count."""
import os.path as osp
import shlex
from typing import Callable, Dict, List, Sequence

from .launchers import (StudyOptions, run_command, submit_slurm, train_here,
                        wait_for_jobs)
from .runs import (DONE_FILE, Arm, Run, RunState, RunStatus, plan_runs,
                   read_curve, record_restarts, run_states)

#: the states of the runs that enter the comparison
COUNTED = (RunState.DONE, RunState.FOREIGN)


def run_study(arms: Sequence[Arm],
              seeds: Sequence[int],
              options: StudyOptions,
              log: Callable[[str], None] = print) -> dict:
    """Train (or submit) what is not done, unless ``options.collect_only``;
    return ``{'curves': {arm: {seed: curve}}, 'failed': [...],
    'commands': [...], 'states': [...]}`` (``curves`` of the runs whose
    state is done or foreign; ``states``: :class:`.runs.RunStatus` each, as
    :func:`.runs.run_states`)."""
    runs = plan_runs(arms, seeds, options.work_dir)
    commands = [shlex.join(run_command(run, options)) for run in runs]
    if options.dry_run:
        for c in commands:
            log(c)
        return dict(curves={}, failed=[], commands=commands, states=[])
    todo = [] if options.collect_only else [
        r for r in runs if not osp.isfile(r.path(DONE_FILE))
    ]
    failed = []
    if options.launcher == 'slurm':
        submit_slurm(todo, options, log)
        if options.wait:
            wait_for_jobs(options.work_dir, options.run_env())
    else:
        failed = train_here(todo, options, log)
    states = run_states(runs, options.work_dir, options.run_env())
    record_restarts(options.work_dir, states)
    if options.launcher == 'slurm' or options.collect_only:
        failed = [
            dict(arm=r.arm, seed=r.seed, log=r.log) for r in states
            if r.state is RunState.FAILED
        ]
    return dict(
        curves=counted_curves(runs, states, options.metric),
        failed=failed,
        commands=commands,
        states=states)


def counted_curves(runs: Sequence[Run], states: List[RunStatus],
                   metric: str) -> Dict[str, Dict[int, list]]:
    """``{arm: {seed: curve}}`` of the runs that count (done, or finished
    outside the study)."""
    counted = {(r.arm, r.seed) for r in states if r.state in COUNTED}
    curves: Dict[str, Dict[int, list]] = {}
    for arm, s, wd in runs:
        c = read_curve(wd, metric) if (arm.name, s) in counted else []
        if c:
            curves.setdefault(arm.name, {})[s] = c
    return curves
