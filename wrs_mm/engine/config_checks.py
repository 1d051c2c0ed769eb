"""Checks of a user's config that mmengine does not make."""
import inspect
import os
from typing import List

import torch
from mmengine.config import Config
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import find_latest_checkpoint

from ..core.compat import torch_version

WEIGHTS_ONLY_VAR = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'


def check_resume_loadable(runner, owner: str) -> None:
    """Fail before resuming when the load is bound to fail, naming the fix.

    mmengine 0.10.x calls ``torch.load`` without ``weights_only=False``;
    torch >= 2.6 defaults to ``weights_only=True`` and refuses mmengine's own
    checkpoints (the message hub's ``HistoryBuffer`` pickles bound methods
    through ``getattr``, which no safe-globals list can allow safely). Raises
    ``RuntimeError`` naming ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` when a
    checkpoint is about to be resumed under those conditions; ``tools/*.py``
    set the variable themselves.
    """
    if not getattr(runner, '_resume', False):
        return
    if os.environ.get(WEIGHTS_ONLY_VAR,
                      '0').lower() in ('1', 'y', 'yes', 'true'):
        return
    if torch_version() < (2, 6) or 'weights_only' in inspect.getsource(
            mm_checkpoint.load_from_local):
        return
    path = runner._load_from or find_latest_checkpoint(runner.work_dir)
    if path is None:
        return  # nothing to resume: mmengine starts afresh
    raise RuntimeError(
        f'{owner}: resuming {path} will fail: mmengine loads it with '
        f'torch.load, whose default on torch {torch.__version__} '
        '(weights_only=True) refuses mmengine checkpoints. For checkpoints '
        f'you trust, set {WEIGHTS_ONLY_VAR}=1 in the environment (wrs_mm\'s '
        'tools/train.py does so itself).')


def dropped_base_hooks(cfg: Config) -> List[str]:
    """Types of the ``custom_hooks`` that a base of ``cfg`` (its
    ``_base_`` files, one level up) lists and ``cfg`` no longer does.

    A config's ``custom_hooks = [...]`` replaces the base's list: RTMDet's
    ``EMAHook`` and ``PipelineSwitchHook`` vanish when a user only adds
    ``WeightRescaleHook``. Best effort: a config without a file, or whose
    bases cannot be read again, gives ``[]``.
    """
    path = getattr(cfg, 'filename', None)
    if not path:
        return []
    try:
        bases = [
            Config._get_cfg_path(b, path)[0]
            for b in Config._get_base_files(path)
        ]
        listed = []
        for base in bases:
            for hook in Config.fromfile(base).get('custom_hooks', []):
                listed.append(hook['type'] if isinstance(hook['type'], str)
                              else hook['type'].__name__)
    except Exception:  # a base that cannot be parsed again
        return []
    kept = {
        h['type'] if isinstance(h['type'], str) else h['type'].__name__
        for h in cfg.get('custom_hooks', [])
    }
    return sorted(set(listed) - kept)
