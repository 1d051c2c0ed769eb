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
``vis_data/scalars.json`` holds the metric). :func:`.stats.reuse_runs` adds
the results of an earlier study to this one's and says whether the runs
both trained agree.

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

Each run has a state (:class:`.runs.RunState`): ``done`` (its done file),
``running`` / ``pending`` (its job in the queue), ``failed`` (started, not
done, not queued) or ``missing`` (never started). Only runs that are done,
or work dirs this module did not start (``collect_only`` on runs trained
elsewhere), enter the comparison.

One module per job: :mod:`.runs` (the plan, the manifest, the states),
:mod:`.launchers` (:class:`.launchers.StudyOptions`; local, torchrun and
Slurm) over :mod:`.slurm_jobs`, :mod:`.stats`, :mod:`.report` and
:mod:`.study` (:func:`.study.run_study`, all of them in order). This package
re-exports what the tools, benchmarks and tests use::

    from wrs_mm.apis.paired_study import Arm, StudyOptions, run_study
    study = run_study([Arm('wd', 'wd.py'), Arm('wrs', 'wrs.py')], [0, 1, 2],
                      StudyOptions('work_dirs/study', 'coco/bbox_mAP'))
"""
from .launchers import LAUNCHERS, StudyOptions, cancel_study, train_command
from .report import markdown_table, plot_curves, states_table, write_report
from .runs import (DONE_FILE, LOG_FILE, MANIFEST, Arm, RunState, RunStatus,
                   dump_arm, read_curve, read_manifest, run_dir, run_states)
from .stats import final_values, paired_difference, reuse_runs, summarize
from .study import run_study

__all__ = [
    'LAUNCHERS', 'StudyOptions', 'cancel_study', 'train_command',
    'markdown_table', 'plot_curves', 'states_table', 'write_report',
    'DONE_FILE', 'LOG_FILE', 'MANIFEST', 'Arm', 'RunState', 'RunStatus',
    'dump_arm', 'read_curve', 'read_manifest', 'run_dir', 'run_states',
    'final_values', 'paired_difference', 'reuse_runs', 'summarize', 'run_study'
]
