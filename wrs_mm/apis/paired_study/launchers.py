"""How a paired study's runs are launched (:class:`StudyOptions`): here,
``jobs`` at a time, with ``tools/train.py`` (``'local'``) or
``tools/dist_train.sh`` (``'pytorch'``, :func:`train_here`), or as Slurm
batch jobs (``'slurm'``, :func:`submit_slurm`, :mod:`.slurm_jobs`), each run
resumed from its last checkpoint when it has one."""
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from . import slurm_jobs
from .runs import (DONE_FILE, LOG_FILE, Arm, ManifestEntry, Run,
                   has_checkpoint, queued_state, read_curve, read_manifest,
                   write_manifest)

LAUNCHERS = ('local', 'pytorch', 'slurm')


def check_launcher(launcher: str, partition: Optional[str]) -> None:
    """Refuse an unknown launcher, and the Slurm one without a
    partition."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'paired study: launcher must be one of '
                         f'{LAUNCHERS}, got {launcher!r}')
    if launcher == 'slurm' and not partition:
        raise ValueError('paired study: launcher "slurm" needs a partition '
                         '(--partition)')


def package_tools() -> str:
    """wrs_mm's ``tools/`` as installed: ``wrs_mm/.mim/tools`` (links into
    the checkout for an editable install; setup.py)."""
    package = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    return osp.join(package, '.mim', 'tools')


@dataclass
class StudyOptions:
    """How to run a study, whatever its arms and seeds: where
    (``work_dir``), what to compare (``metric``), the launcher with ``jobs``
    runs at a time, ``gpus`` per run and the Slurm ``partition``, the
    ``tools_dir`` (None: :func:`package_tools`), ``collect_only`` (train
    nothing), ``dry_run`` (print the commands), ``wait`` (for the Slurm
    jobs to leave the queue), ``env`` (variables added to the runs') and
    ``signal_time``: Slurm jobs are requeued after a signal checkpoint on
    ``SIGUSR1`` that many seconds before their time limit, and save before
    stopping on ``SIGTERM`` (:mod:`.slurm_jobs`; 0: neither)."""
    work_dir: str
    metric: str
    launcher: str = 'local'
    jobs: int = 1
    gpus: int = 1
    partition: Optional[str] = None
    tools_dir: Optional[str] = None
    collect_only: bool = False
    dry_run: bool = False
    wait: bool = False
    env: Optional[dict] = None
    signal_time: int = 120

    def __post_init__(self):
        check_launcher(self.launcher, self.partition)
        if not isinstance(self.signal_time, int) or self.signal_time < 0:
            raise ValueError('paired study: --signal-time must be a number '
                             'of seconds >= 0 (0: no signal checkpoint), '
                             f'got {self.signal_time!r}')
        self.tools_dir = self.tools_dir or package_tools()

    def run_env(self) -> dict:
        """The runs' environment: this process's plus ``env``."""
        return dict(os.environ, **(self.env or {}))


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
    check_launcher(launcher, partition)
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
    return [
        'bash',
        osp.join(tools_dir, 'slurm_train.sh'), partition,
        f'{arm.name}_seed{seed}', arm.config, work_dir, *options
    ]


def run_command(run: Run,
                options: StudyOptions,
                resume: bool = False) -> List[str]:
    """:func:`train_command` of ``run`` with ``options``' launcher."""
    return train_command(run.arm, run.seed, run.work_dir, options.tools_dir,
                         options.launcher, options.gpus, options.partition,
                         resume)


def train_here(todo: Sequence[Run], options: StudyOptions,
               log: Callable[[str], None]) -> List[dict]:
    """Train ``todo`` with the local or pytorch launcher, ``options.jobs``
    at a time, each resumed from its last checkpoint if it has one; the
    runs that failed."""
    failed = []
    run_env = options.run_env()

    def train(job) -> None:
        i, run = job
        arm, s, wd = run
        os.makedirs(wd, exist_ok=True)
        resume = has_checkpoint(wd)
        cmd = run_command(run, options, resume)
        env = dict(run_env)
        if options.launcher == 'pytorch':
            env['PORT'] = str(29500 + i % max(options.jobs, 1))
        t0 = time.time()
        with open(run.path(LOG_FILE), 'a') as out:
            rc = subprocess.run(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        secs = time.time() - t0
        if rc:
            failed.append(dict(arm=arm.name, seed=s, returncode=rc))
            log(f'{arm.name} seed {s}: FAILED (exit {rc}), see '
                f'{wd}/{LOG_FILE}')
            return
        with open(run.path(DONE_FILE), 'w') as f:
            json.dump(dict(command=cmd, seconds=secs), f)
        last = read_curve(wd, options.metric)
        log(f'{arm.name} seed {s}: {options.metric} '
            f"{last[-1][1] if last else 'missing'} ({secs:.0f} s)"
            f"{' (resumed)' if resume else ''}")

    with ThreadPoolExecutor(max(options.jobs, 1)) as pool:
        list(pool.map(train, enumerate(todo)))
    return failed


def submit_slurm(todo: Sequence[Run], options: StudyOptions,
                 log: Callable[[str], None]) -> None:
    """``sbatch`` each run of ``todo`` whose last job is not queued; record
    the job ids in the manifest."""
    run_env = options.run_env()
    resources = slurm_jobs.slurm_resources(options.gpus, run_env)
    manifest = read_manifest(options.work_dir)
    queued = slurm_jobs.queued_jobs(run_env) if todo else {}
    for run in todo:
        arm, s, wd = run
        entry = manifest.get(run.key)
        if entry and entry.job in queued:
            log(f'{arm.name} seed {s}: job {entry.job} '
                f'{queued_state(queued[entry.job]).value}')
            continue
        os.makedirs(wd, exist_ok=True)
        cmd = run_command(run, options)
        script = run.path('paired_study_job.sh')
        with open(script, 'w') as f:
            f.write(
                slurm_jobs.job_script(cmd, f'{arm.name}_seed{s}',
                                      options.partition, resources,
                                      run.path(LOG_FILE), run.path(DONE_FILE),
                                      wd, options.signal_time))
        job = slurm_jobs.sbatch(script, run_env)
        resumed = has_checkpoint(wd)
        entry = entry or ManifestEntry(arm.name, s, [], shlex.join(cmd),
                                       script, run.path(LOG_FILE))
        entry.job_ids.append(job)
        manifest[run.key] = entry
        log(f'{arm.name} seed {s}: submitted job {job}'
            f"{' (resumes from its last checkpoint)' if resumed else ''}")
        write_manifest(options.work_dir, manifest)


def wait_for_jobs(work_dir: str, env: dict, poll: float = 5.) -> None:
    """Until no job of the study's manifest is queued."""
    ids = {e.job for e in read_manifest(work_dir).values()}
    while ids & set(slurm_jobs.queued_jobs(env)):
        time.sleep(poll)


def cancel_study(work_dir: str, env: Optional[dict] = None) -> List[str]:
    """``scancel`` the study's jobs that are still queued; their ids."""
    queued = slurm_jobs.queued_jobs(env)
    jobs = [e.job for e in read_manifest(work_dir).values() if e.job in queued]
    slurm_jobs.cancel(jobs, env)
    return jobs
