"""What ``tools/train.py`` and ``tools/test.py`` share: mmdet's launcher flags
and config handling, and multi-process runs on machines without CUDA."""
import argparse
import gc
import importlib
import os
import os.path as osp
import subprocess
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import CheckpointLoader, Runner, find_latest_checkpoint

from ..engine.checkpoint_on_signal_hook import STATE_KEY as SIGNAL_STATE_KEY
from ..engine.checkpoint_on_signal_hook import CheckpointOnSignalHook


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher``, ``--local-rank`` as mmdet's tools."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launch_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_runner(cfg: Config) -> Runner:
    """The runner of ``cfg`` (``runner_type`` honoured); on a machine without
    CUDA, a distributed launch runs on CPU (:func:`setup_cpu_distributed`).
    Under ``--launcher slurm`` the rendezvous port is the job's own
    (:func:`slurm_master_port`) unless ``MASTER_PORT`` is set."""
    if cfg.get('launcher') == 'slurm' and 'SLURM_JOB_ID' in os.environ:
        os.environ.setdefault('MASTER_PORT', slurm_master_port(os.environ))
    setup_cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)


def slurm_master_port(environ) -> str:
    """The rendezvous port of a Slurm job's tasks: ``10000 + job id % 10000``.
    Jobs sharing a node get different ports (mmengine's fixed 29500 lets the
    second one fail with ``EADDRINUSE``), and the range lies below the
    kernel's ephemeral ports (from 32768), which outgoing connections take
    at random."""
    return str(10000 + int(environ['SLURM_JOB_ID']) % 10000)


def close_distributed() -> None:
    """End a distributed run: destroy the process groups and free them, once
    the runner is no longer referenced.

    A gloo process group's worker threads stop only when the group object is
    freed, and the runner's DDP wrapper holds it. Left to the interpreter's
    exit, a worker thread may still be releasing its last collective (the
    evaluator's broadcast of the metrics) when Python finalizes: it needs the
    GIL, the thread is cancelled, and the process aborts ('terminate called
    without an active exception', SIGABRT) after its work is done, so torchrun
    reports the launch failed (pytorch/pytorch#190489). Collecting the
    runner's reference cycles frees the group while Python is alive, and its
    destructor joins the threads. Two-process CPU runs of
    ``tools/dist_test.sh``, interleaved on one machine: 3 of 40 aborted
    before, 0 of 40 with it; destroying the group without freeing it still
    aborted."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def read_config(path: str) -> Config:
    """A config file, or ``mmdet::x.py`` / ``mmseg::x.py``: a config of an
    installed package, from its ``.mim/configs`` (mmengine's ``get_config``
    refuses folder names with other characters than ``\\w``, as mmdet's
    ``gn+ws/``, and may ``pip install`` a missing package)."""
    if '::' not in path:
        return Config.fromfile(path)
    package, rel = path.split('::', 1)
    root = osp.dirname(importlib.import_module(package).__file__)
    return Config.fromfile(osp.join(root, '.mim', 'configs', rel))


def load_config(path: str,
                cfg_options=None,
                launcher: str = 'none',
                work_dir: str = None) -> Config:
    """The config as mmdet's tools load it (a path, or ``mmdet::`` /
    ``mmseg::`` for an installed package's config): ``--cfg-options`` merged,
    the launcher set, ``work_dir`` from the argument, the config, or
    ``./work_dirs/<config name>``."""
    cfg = read_config(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def add_signal_hook(cfg: Config, on_signal: Optional[str]) -> None:
    """``--on-signal exit|requeue``: a ``CheckpointOnSignalHook`` with that
    choice in ``custom_hooks``, unless the config has one."""
    if on_signal and not _signal_hook(cfg):
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='CheckpointOnSignalHook', on_signal=on_signal)
        ]


def _signal_hook(cfg: Config) -> bool:
    return any(
        h.get('type') in ('CheckpointOnSignalHook', CheckpointOnSignalHook)
        for h in cfg.get('custom_hooks') or [])


def prepare_resume(cfg: Config) -> None:
    """Make ``resume`` continue exactly where the checkpoint left off.

    * mmengine puts the checkpoint's seed back only after the model and the
      train dataloader exist, so a run resumed without ``randomness.seed``
      would sample and augment with a fresh seed: the checkpoint's seed goes
      into ``cfg.randomness.seed`` before the runner is built.
    * A checkpoint saved on a signal (``CheckpointOnSignalHook``) in the
      middle of an epoch needs that hook to skip the epoch's trained batches:
      it is added (``on_signal='exit'``) when the config has none.

    Reads the checkpoint to resume from (``load_from``, or the latest in the
    work dir) only when the config sets no seed or has no such hook."""
    randomness = dict(cfg.get('randomness') or {})
    need_seed = randomness.get('seed') is None
    if not cfg.get('resume') or not (need_seed or not _signal_hook(cfg)):
        return
    path = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    if not path:
        return
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    seed = checkpoint.get('meta', {}).get('seed')
    if need_seed and seed is not None:
        cfg.randomness = dict(randomness, seed=seed)
        print_log(
            f'resume: seed {seed} of {path} restored (the config sets '
            'none)',
            logger='current')
    if SIGNAL_STATE_KEY in checkpoint and not _signal_hook(cfg):
        add_signal_hook(cfg, 'exit')
        print_log(
            f'resume: {path} was saved on a signal; CheckpointOnSignalHook '
            "(on_signal='exit') added to continue its epoch",
            logger='current')


def setup_cpu_distributed(cfg: Config) -> None:
    """With a launcher but no CUDA (``dist_train.sh`` or ``slurm_train.sh``
    on CPU machines): DDP without ``device_ids`` over gloo, its process group
    started here, so that mmengine (whose ``init_dist`` always calls
    ``torch.cuda.set_device``) finds it started. ``pytorch``: from torchrun's
    environment; ``slurm``: from Slurm's (:func:`slurm_dist_env`). Nothing to
    do with CUDA or without a launcher; ``mpi`` needs CUDA."""
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher not in ('pytorch', 'slurm'):
        raise RuntimeError(f'--launcher {launcher} needs CUDA; on a CPU-only '
                           'machine use --launcher pytorch (torchrun, as '
                           'tools/dist_train.sh does) or --launcher slurm '
                           '(srun, as tools/slurm_train.sh does)')
    if launcher == 'slurm':
        os.environ.update(slurm_dist_env(os.environ))
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg',
                                             {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')


def slurm_dist_env(environ) -> dict:
    """The ``env://`` rendezvous variables of an ``srun`` task, as mmengine
    sets them for ``--launcher slurm``: ``RANK`` = ``SLURM_PROCID``,
    ``WORLD_SIZE`` = ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``,
    ``MASTER_ADDR`` the first host of ``SLURM_NODELIST`` (``scontrol show
    hostnames``) and ``MASTER_PORT`` the job's (:func:`slurm_master_port`);
    a ``MASTER_ADDR`` or ``MASTER_PORT`` already set is kept."""
    missing = [
        k for k in ('SLURM_JOB_ID', 'SLURM_PROCID', 'SLURM_NTASKS',
                    'SLURM_LOCALID', 'SLURM_NODELIST') if k not in environ
    ]
    if missing:
        raise RuntimeError(f'--launcher slurm: {missing} not set; start the '
                           'tool with srun (tools/slurm_train.sh) or use '
                           '--launcher pytorch / none')
    out = dict(
        RANK=environ['SLURM_PROCID'],
        WORLD_SIZE=environ['SLURM_NTASKS'],
        LOCAL_RANK=environ['SLURM_LOCALID'],
        MASTER_PORT=environ.get('MASTER_PORT') or slurm_master_port(environ))
    if 'MASTER_ADDR' in environ:
        out['MASTER_ADDR'] = environ['MASTER_ADDR']
    else:
        hosts = subprocess.run(
            ['scontrol', 'show', 'hostnames', environ['SLURM_NODELIST']],
            capture_output=True,
            text=True,
            check=True).stdout.split()
        out['MASTER_ADDR'] = hosts[0]
    return out


def allow_full_checkpoint_load() -> None:
    """For the scripts in ``tools/`` (called at their start, never by the
    library): mmengine 0.10.x calls ``torch.load`` without
    ``weights_only=False``, so torch >= 2.6 refuses its own checkpoints
    (optimizer and message-hub state) on ``--resume``. Restores torch's old
    default for this process, unless the user set the variable."""
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
