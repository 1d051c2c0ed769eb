"""The plan of a paired study and what became of it: the arms, one run per
arm and seed in ``<work_dir>/<arm>/seed<s>`` (:func:`plan_runs`), the files a
run leaves, the manifest of submitted Slurm jobs (:class:`ManifestEntry`),
each run's curve of a metric (:func:`read_curve`) and its state
(:class:`RunState`, :func:`run_states`)."""
import enum
import json
import os
import os.path as osp
import shutil
from dataclasses import asdict, dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence

from . import slurm_jobs

#: a run's done file: written when its training exits with 0
DONE_FILE = 'paired_study_run.json'
#: a run's training log (stdout and stderr, every start appended)
LOG_FILE = 'paired_study_train.log'
#: the study's Slurm jobs, in its work dir
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


class Run(NamedTuple):
    """One arm trained on one seed into its own (absolute) work dir."""
    arm: Arm
    seed: int
    work_dir: str

    @property
    def key(self) -> str:
        """The run's name in the manifest: ``<arm>/seed<s>``."""
        return f'{self.arm.name}/seed{self.seed}'

    def path(self, name: str) -> str:
        """The file ``name`` in the run's work dir."""
        return osp.join(self.work_dir, name)


def run_dir(work_dir: str, arm: str, seed: int) -> str:
    """Where the study in ``work_dir`` trains ``arm`` on ``seed``."""
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


def check_plan(arms: Sequence[Arm], seeds: Sequence[int]) -> None:
    """Refuse arms without distinct names, or an arm without seeds."""
    names = [a.name for a in arms]
    if len(set(names)) != len(names) or not arms:
        raise ValueError('paired study: give arms with distinct names, got '
                         f'{names}')
    if any(not (seeds if a.seeds is None else a.seeds) for a in arms):
        raise ValueError('paired study: give at least one seed to every arm '
                         '(the study\'s seeds, or the arm\'s own)')


def plan_runs(arms: Sequence[Arm], seeds: Sequence[int],
              work_dir: str) -> List[Run]:
    """The study's runs, arm by arm: each arm on the study's seeds, or on its
    own."""
    check_plan(arms, seeds)
    return [
        Run(arm, s, osp.abspath(run_dir(work_dir, arm.name, s)))
        for arm in arms for s in (seeds if arm.seeds is None else arm.seeds)
    ]


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


def has_checkpoint(work_dir: str) -> bool:
    """Whether a run's work dir holds a checkpoint to resume from."""
    return osp.isfile(osp.join(work_dir, slurm_jobs.CHECKPOINT_POINTER))


@dataclass
class ManifestEntry:
    """A run's line in the manifest: its Slurm jobs (every submission, the
    last one current), the command they run, the job script, the log, and
    how many times Slurm requeued the current job (as last collected)."""
    arm: str
    seed: int
    job_ids: List[str]
    command: str
    script: str
    log: str
    restarts: int = 0

    @property
    def job(self) -> str:
        """The run's current job: its last submission."""
        return self.job_ids[-1]


def read_manifest(work_dir: str) -> Dict[str, ManifestEntry]:
    """``{'<arm>/seed<s>': entry}`` of the study's submitted jobs."""
    path = osp.join(work_dir, MANIFEST)
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return {
            f"{r['arm']}/seed{r['seed']}": ManifestEntry(**r)
            for r in json.load(f)
        }


def record_restarts(work_dir: str, states: Sequence['RunStatus']) -> None:
    """Write each run's restart count (from :func:`run_states`) into the
    manifest, when it changed."""
    manifest = read_manifest(work_dir)
    changed = False
    for status in states:
        entry = manifest.get(f'{status.arm}/seed{status.seed}')
        if entry and entry.job == status.job and \
                entry.restarts != status.restarts:
            entry.restarts, changed = status.restarts, True
    if changed:
        write_manifest(work_dir, manifest)


def write_manifest(work_dir: str, manifest: Dict[str, ManifestEntry]) -> None:
    """Write ``manifest`` (as :func:`read_manifest` returns it)."""
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, MANIFEST), 'w') as f:
        json.dump([asdict(e) for e in manifest.values()], f, indent=1)


class RunState(enum.Enum):
    """A run's state; the value is how the study reports it."""
    #: its done file is written
    DONE = 'done'
    #: its Slurm job waits in the queue
    PENDING = 'pending'
    #: its Slurm job was requeued (a signal, a preemption) and waits to
    #: start again, resumed
    REQUEUED = 'requeued'
    #: its Slurm job runs (or ends, or is suspended)
    RUNNING = 'running'
    #: started (submitted, or its log written), neither done nor queued
    FAILED = 'failed'
    #: never started
    MISSING = 'missing'
    #: submitted, but no ``squeue`` on this machine to ask
    UNKNOWN = 'unknown'
    #: a work dir with results that the study did not start: counted as done
    FOREIGN = 'foreign'

    @property
    def queued(self) -> bool:
        """Whether the run's job is still in the Slurm queue."""
        return self in (RunState.PENDING, RunState.REQUEUED, RunState.RUNNING)


#: the state of a run whose job is in the queue, by the job's Slurm state
#: (any other: running)
SLURM_QUEUE_STATES = {
    'PENDING': RunState.PENDING,
    'CONFIGURING': RunState.PENDING,
    'REQUEUED': RunState.PENDING,
    'RESV_DEL_HOLD': RunState.PENDING,
    'REQUEUE_HOLD': RunState.PENDING,
}


def queued_state(job: slurm_jobs.SlurmJob) -> RunState:
    """The state of a run whose job is in the queue: requeued when it waits
    after a restart."""
    state = SLURM_QUEUE_STATES.get(job.state, RunState.RUNNING)
    if state is RunState.PENDING and job.restarts:
        return RunState.REQUEUED
    return state


@dataclass
class RunStatus:
    """What became of one run: its :class:`RunState`, its current Slurm job
    and that job's Slurm state (how it ended, for a failed run whose job
    Slurm still remembers), its log, and how many times Slurm requeued the
    job."""
    arm: str
    seed: int
    state: RunState
    job: Optional[str]
    log: str
    slurm_state: Optional[str] = None
    restarts: int = 0

    @property
    def detail(self) -> str:
        """The state as the study prints it, e.g. ``failed (CANCELLED)``,
        ``requeued (1 restart)``."""
        if self.state is RunState.UNKNOWN:
            return 'unknown (submitted; no squeue on this machine)'
        notes = [self.slurm_state] if self.state is RunState.FAILED \
            and self.slurm_state else []
        if self.restarts:
            notes.append(f"{self.restarts} restart"
                         f"{'s' if self.restarts > 1 else ''}")
        return self.state.value + (f" ({', '.join(notes)})" if notes else '')


def run_states(runs: Sequence[Run],
               work_dir: str,
               env: Optional[dict] = None) -> List[RunStatus]:
    """Each run's :class:`RunStatus`, from its files, the manifest and, when
    the study submitted jobs and ``squeue`` is on ``env``'s ``PATH``, the
    Slurm queue and controller."""
    manifest = read_manifest(work_dir)
    squeue = bool(manifest) and bool(
        shutil.which('squeue', path=(env or os.environ).get('PATH')))
    queued = slurm_jobs.queued_jobs(env) if squeue else {}
    out = []
    for run in runs:
        entry = manifest.get(run.key)
        job = entry.job if entry else None
        status = RunStatus(run.arm.name, run.seed, RunState.MISSING, job,
                           run.path(LOG_FILE))
        if osp.isfile(run.path(DONE_FILE)):
            status.state = RunState.DONE
            with open(run.path(DONE_FILE)) as f:
                status.restarts = json.load(f).get('restarts', 0)
        elif job in queued:
            known = slurm_jobs.job_state(job, env) or queued[job]
            status.state = queued_state(
                slurm_jobs.SlurmJob(queued[job].state, known.restarts))
            status.slurm_state = queued[job].state
            status.restarts = known.restarts
        elif job and not squeue:
            status.state = RunState.UNKNOWN
        elif entry or osp.isfile(run.path(LOG_FILE)):
            status.state = RunState.FAILED
            ended = slurm_jobs.job_state(job, env) if job else None
            status.slurm_state = ended.state if ended else None
            status.restarts = ended.restarts if ended else 0
        elif osp.isdir(run.work_dir) and read_curve(run.work_dir, 'step'):
            status.state = RunState.FOREIGN
        out.append(status)
    return out
