"""Compare configs over paired seeds: train every arm on every seed (or only
collect finished work dirs), then report each arm minus the baseline with a
95 % t interval, wins, per-seed values and metric curves.

    python tools/analysis/paired_study.py CONFIG [CONFIG ...] --metric KEY
        [--variant NAME k=v [k=v ...]] ... [--names A B ...]
        [--baseline NAME] [--seeds 0 1 2] [--work-dir work_dirs/paired_study]
        [--launcher local|pytorch|slurm] [--jobs N] [--gpus N]
        [--partition P] [--signal-time S] [--cfg-options k=v ...]
        [--collect-only] [--wait] [--cancel] [--dry-run]

Arms: each CONFIG (named after its file, or ``--names``), plus each
``--variant NAME k=v ...`` (the first CONFIG with those ``--cfg-options``).
``--cfg-options`` apply to every arm. The baseline is the first arm unless
``--baseline`` names another. Seed ``s`` sets ``randomness.seed=s``.

Launchers: ``local`` runs ``tools/train.py`` (``--jobs`` at a time);
``pytorch`` runs ``tools/dist_train.sh CONFIG GPUS``; ``slurm`` submits one
``sbatch`` job per run, which runs ``tools/slurm_train.sh PARTITION JOB CONFIG
WORK_DIR`` with ``GPUS`` (and ``GPUS_PER_NODE``, ``TASKS_PER_NODE``,
``CPUS_PER_TASK`` from the environment), prints the job ids, writes
``<work-dir>/paired_study_manifest.json`` and returns; ``--wait`` blocks
until the jobs end. Runs land in ``<work-dir>/<arm>/seed<s>``; a finished run
is never repeated, a killed, failed or timed-out one resumes from its last
checkpoint when the tool runs again, and a queued one is left alone. Slurm
jobs are submitted with ``--requeue --signal=B:USR1@S`` (``--signal-time``,
default 120; 0: neither): warned before the time limit, a run saves a
checkpoint and requeues its job, which resumes from it; on SIGTERM
(preemption, scancel) it saves and stops.
``--collect-only`` trains nothing: it prints each run's state (done /
running / pending / requeued / failed / missing, with the job's restarts)
and the table of what is done.
``--cancel`` cancels the study's queued jobs.

Example, the shipped YOLOv3 WD and WRS configs on COCO, 3 seeds, 8 GPUs each
under slurm::

    Y=configs/yolov3/yolov3_d53-bn
    python tools/analysis/paired_study.py \\
        ${Y}_wd_1xb8-ms-320-640-100e-cos_coco.py \\
        ${Y}_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py \\
        --names wd wrs --metric coco/bbox_mAP --seeds 0 1 2 \\
        --launcher slurm --partition PARTITION --gpus 8 --jobs 3 \\
        --work-dir work_dirs/yolov3_wd_vs_wrs

Writes ``paired_study.json``, ``paired_study.md`` and
``paired_study_curves.png`` to the work dir and prints the table.
"""
import argparse
import os.path as osp
import sys

from wrs_mm.apis.paired_study import (LAUNCHERS, Arm, StudyOptions,
                                      cancel_study, markdown_table, run_study,
                                      states_table, write_report)


def arms_from_args(args) -> list:
    names = args.names or [
        osp.splitext(osp.basename(c))[0] for c in args.configs
    ]
    if len(names) != len(args.configs):
        raise SystemExit(f'--names: {len(names)} names for '
                         f'{len(args.configs)} configs')
    arms = [
        Arm(n, osp.abspath(c), list(args.cfg_options))
        for n, c in zip(names, args.configs)
    ]
    for name, *options in args.variant or []:
        arms.append(
            Arm(name, osp.abspath(args.configs[0]),
                list(args.cfg_options) + options))
    return arms


def parse_args(argv=None) -> tuple:
    """The options, the arms and the baseline's name."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('configs', nargs='+')
    ap.add_argument(
        '--metric', required=True, help='e.g. coco/bbox_mAP, mIoU, test/top1')
    ap.add_argument(
        '--variant',
        nargs='+',
        action='append',
        metavar=('NAME', 'K=V'),
        help='an arm: the first config with these cfg options')
    ap.add_argument('--names', nargs='+', help='arm names of the configs')
    ap.add_argument('--baseline', help='arm the others are compared with')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--work-dir', default='work_dirs/paired_study')
    ap.add_argument('--launcher', choices=LAUNCHERS, default='local')
    ap.add_argument('--jobs', type=int, default=1, help='runs at a time')
    ap.add_argument(
        '--gpus', type=int, default=1, help='GPUs per run (pytorch, slurm)')
    ap.add_argument('--partition', help='slurm partition')
    ap.add_argument(
        '--signal-time',
        type=int,
        default=120,
        help='slurm: the runs save a checkpoint and requeue their job on '
        'SIGUSR1, sent this many seconds before the time limit, and save '
        'before stopping on SIGTERM (0: off)')
    ap.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='K=V',
        help='options for every arm')
    ap.add_argument(
        '--collect-only',
        action='store_true',
        help='train nothing; report the work dirs as they are')
    ap.add_argument(
        '--wait',
        action='store_true',
        help='slurm: wait until the submitted jobs end, then report')
    ap.add_argument(
        '--cancel',
        action='store_true',
        help="slurm: cancel the study's queued jobs (scancel) and report")
    ap.add_argument(
        '--dry-run',
        action='store_true',
        help='print the training commands and stop')
    args = ap.parse_args(argv)
    arms = arms_from_args(args)
    if len(arms) < 2:
        ap.error('give at least two arms (configs, or a config and --variant)')
    baseline = args.baseline or arms[0].name
    if baseline not in [a.name for a in arms]:
        ap.error(f'--baseline {baseline!r} is not an arm: '
                 f'{[a.name for a in arms]}')
    return args, arms, baseline


def report(study: dict, arms, baseline: str, args) -> int:
    """Print the runs' states and the comparison, write the report; the
    exit status."""
    print(states_table(study['states']))
    waiting = [r for r in study['states'] if r.state.queued]
    if waiting and baseline not in study['curves']:
        print(f'{len(waiting)} runs queued; collect later with the same '
              'command and --collect-only')
        return 0
    if baseline not in study['curves']:
        print(
            f'no results for the baseline {baseline!r} in {args.work_dir}',
            file=sys.stderr)
        return 1
    summary = write_report(study, baseline, args.metric, args.work_dir)
    print(markdown_table(summary))
    missing = [
        (a.name, s) for a in arms for s in args.seeds
        if str(s) not in summary['arms'].get(a.name, {}).get('values', {})
    ]
    if missing:
        print(
            f'not done (failed, queued or not trained): {missing}',
            file=sys.stderr)
    return 1 if study['failed'] else 0


def main(argv=None) -> int:
    args, arms, baseline = parse_args(argv)
    if args.cancel:
        cancelled = cancel_study(args.work_dir)
        print(f'cancelled jobs: {cancelled}')
    study = run_study(
        arms, args.seeds,
        StudyOptions(
            args.work_dir,
            args.metric,
            launcher=args.launcher,
            jobs=args.jobs,
            gpus=args.gpus,
            partition=args.partition,
            tools_dir=osp.dirname(osp.dirname(osp.abspath(__file__))),
            collect_only=args.collect_only or args.cancel,
            dry_run=args.dry_run,
            wait=args.wait,
            signal_time=args.signal_time))
    if args.dry_run:
        return 0
    return report(study, arms, baseline, args)


if __name__ == '__main__':
    sys.exit(main())
