"""What ``tools/train.py`` and ``tools/test.py`` share: mmdet's launcher flags
and config handling, plus what they do beyond mmdet's own tools (resume under
torch >= 2.6, multi-process runs without CUDA)."""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher``, ``--local-rank`` as mmdet's tools."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launch_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_runner(cfg: Config) -> Runner:
    """The runner of ``cfg`` (``runner_type`` honoured), CPU-distributed
    settings applied when needed."""
    adapt_to_cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)


def load_config(path: str, cfg_options=None, launcher: str = 'none',
                work_dir: str = None) -> Config:
    """The config as mmdet's tools load it: ``--cfg-options`` merged, the
    launcher set, ``work_dir`` from the argument, the config, or
    ``./work_dirs/<config name>``."""
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def allow_full_checkpoint_load() -> None:
    """mmengine 0.10.x calls ``torch.load`` without ``weights_only=False``;
    torch >= 2.6 then refuses its checkpoints (optimizer / message-hub state)
    on ``--resume``. Restore the old default for our own checkpoints."""
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


def adapt_to_cpu_distributed(cfg) -> None:
    """With a launcher but no CUDA (e.g. ``dist_train.sh`` on CPU machines):
    gloo backend, DDP without ``device_ids``, and skip mmengine 0.10.7's
    unconditional ``torch.cuda.set_device``."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    torch.cuda.set_device = lambda device: None
