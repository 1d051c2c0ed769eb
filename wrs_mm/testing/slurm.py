"""A single-node Slurm cluster in a folder, for tests of the Slurm paths
(``tools/slurm_train.sh``, ``tools/slurm_test.sh``, the paired study's
``sbatch`` launcher) on a machine without one.

:func:`install_slurm` installs Debian's ``slurm-wlm`` and ``munge`` with apt
when they are missing (as root). :class:`LocalSlurm` starts a private
``munged`` (its own key and socket), ``slurmctld`` and ``slurmd`` on free
ports with a ``slurm.conf`` in its folder: one node (this host) in one
partition, ``select/cons_tres``, no GPU gres; :attr:`LocalSlurm.env` points
Slurm's commands at it (``SLURM_CONF``). :meth:`LocalSlurm.stop` cancels its
jobs and stops the daemons it started, by the PIDs in their pid files.
Nothing is written outside the folder (a new one in the temp dir that the
``munge`` user can traverse, removed by :meth:`LocalSlurm.stop`), so clusters
of concurrent test runs do not meet.
"""
import os
import os.path as osp
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional

from ..core.preemption import slurm_job

COMMANDS = ('munged', 'slurmctld', 'slurmd', 'srun', 'sbatch', 'squeue',
            'scancel', 'scontrol', 'sinfo')

SLURM_CONF = """ClusterName=wrsmm
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmUser=root
ReturnToService=2
MpiDefault=none
MinJobAge=3600
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def install_slurm(timeout: float = 600) -> Optional[str]:
    """Install ``slurm-wlm`` and ``munge`` with apt if a command of theirs is
    missing. Returns None when they are there, else why they cannot be
    (not root, no apt-get, apt failed)."""
    if all(shutil.which(c) for c in COMMANDS):
        return None
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        return ('Slurm is not installed and cannot be: installing '
                'slurm-wlm and munge needs apt-get as root')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    install = [
        'apt-get', '-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '-q',
        'slurm-wlm', 'munge'
    ]
    res = subprocess.run(
        install, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode:  # package lists missing or stale
        subprocess.run(['apt-get', 'update', '-q'],
                       env=env,
                       capture_output=True,
                       timeout=timeout)
        res = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode or not all(shutil.which(c) for c in COMMANDS):
        return ('apt-get could not install slurm-wlm and munge: ' +
                (res.stderr or res.stdout)[-500:])
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('', 0))
        return s.getsockname()[1]


class LocalSlurm:
    """One node (this host, ``cpus`` CPUs, default at least 2) in one
    partition; its state, logs and pid files in a new folder
    (:attr:`root`)."""

    def __init__(self, cpus: Optional[int] = None, partition: str = 'debug'):
        self.root = tempfile.mkdtemp(prefix='wrs_mm_slurm_')
        self.cpus = cpus or max(os.cpu_count() or 1, 2)
        self.partition = partition
        self.host = socket.gethostname()
        self.env = dict(
            os.environ, SLURM_CONF=osp.join(self.root, 'slurm.conf'))
        self._pid_files = []

    def start(self, timeout: float = 60) -> 'LocalSlurm':
        for d in ('state', 'spool', 'log', 'munge', 'munge_key'):
            os.makedirs(osp.join(self.root, d), exist_ok=True)
        os.chmod(self.root, 0o755)
        self._start_munged()
        with open(self.env['SLURM_CONF'], 'w') as f:
            f.write(
                SLURM_CONF.format(
                    host=self.host,
                    ctld_port=_free_port(),
                    d_port=_free_port(),
                    root=self.root,
                    cpus=self.cpus,
                    memory=4000 * self.cpus,
                    partition=self.partition))
        for daemon in ('slurmctld', 'slurmd'):
            subprocess.run([daemon, '-f', self.env['SLURM_CONF']],
                           env=self.env,
                           check=True,
                           timeout=timeout)
            self._pid_files.append(osp.join(self.root, f'{daemon}.pid'))
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.run('sinfo', '-h', '-o', '%t').stdout.strip()
            if state == 'idle':
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f'local Slurm: the node is {state!r}, not idle, '
                           f'after {timeout} s; logs in {self.root}/log')

    def _start_munged(self) -> None:
        """munged as the ``munge`` user, with a new key in a folder only it
        reads and its socket in one everybody can traverse."""
        key = osp.join(self.root, 'munge_key', 'munge.key')
        with open(key, 'wb') as f:
            f.write(os.urandom(1024))
        user = pwd.getpwnam('munge')
        for path, mode in ((key, 0o400), (osp.dirname(key), 0o700),
                           (osp.join(self.root, 'munge'), 0o755)):
            os.chown(path, user.pw_uid, user.pw_gid)
            os.chmod(path, mode)
        m = osp.join(self.root, 'munge')
        subprocess.run([
            'runuser', '-u', 'munge', '--', 'munged',
            f'--socket={m}/munge.socket', f'--key-file={key}',
            f'--pid-file={m}/munged.pid', f'--log-file={m}/munged.log',
            f'--seed-file={m}/munged.seed'
        ],
                       check=True,
                       timeout=60)
        self._pid_files.append(osp.join(m, 'munged.pid'))

    def run(self,
            *cmd: str,
            check: bool = False) -> subprocess.CompletedProcess:
        """A Slurm command (``squeue``, ``scancel`` ...) on this cluster."""
        return subprocess.run(
            cmd,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120)

    def job(self, job: str) -> dict:
        """The fields of ``scontrol show job`` for ``job`` on this cluster
        (``JobState``, ``Restarts`` ...); ``{}`` once forgotten."""
        return slurm_job(job, self.env)

    def stop(self, timeout: float = 60) -> None:
        """Cancel every job, wait for them to end, stop the daemons this
        cluster started (slurmd, slurmctld, munged) by PID, remove the
        folder."""
        if self.run('squeue', '-h', '-o', '%i').returncode == 0:
            self.run('scancel', '--full', '--partition', self.partition)
            deadline = time.time() + timeout
            while time.time() < deadline and self.run('squeue', '-h', '-o',
                                                      '%i').stdout.strip():
                time.sleep(0.5)
        for pid_file in reversed(self._pid_files):
            if not osp.isfile(pid_file):
                continue
            with open(pid_file) as f:
                pid = int(f.read().strip())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.time() + timeout
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
        self._pid_files = []
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of this process does not)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False
