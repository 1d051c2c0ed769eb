"""Checks of a user's config that mmengine does not make."""
import os
from typing import List, Tuple

import mmengine
import torch
from mmengine.config import Config
from mmengine.runner import find_latest_checkpoint
from mmengine.utils import digit_version

from ..core.compat import torch_version

WEIGHTS_ONLY_VAR = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
#: the first torch whose ``torch.load`` defaults to ``weights_only=True``
TORCH_WEIGHTS_ONLY = (2, 6)
#: the first mmengine release that can hold the fix (``load_from_local``
#: passing ``weights_only=False``, mmengine commit 151a87ab): the fix is on
#: mmengine's main branch after v0.10.7, the newest release, which does not
#: have it
MMENGINE_WEIGHTS_ONLY_FIX = digit_version('0.10.8')


def mmengine_version() -> Tuple[int, ...]:
    """mmengine's version as :func:`mmengine.utils.digit_version` gives it
    (comparable with :data:`MMENGINE_WEIGHTS_ONLY_FIX`)."""
    return digit_version(mmengine.__version__)


def resume_load_fails() -> bool:
    """Whether mmengine's ``torch.load`` of a checkpoint to resume uses
    torch's ``weights_only=True`` default: torch >=
    :data:`TORCH_WEIGHTS_ONLY` with an mmengine older than
    :data:`MMENGINE_WEIGHTS_ONLY_FIX`."""
    return (torch_version() >= TORCH_WEIGHTS_ONLY
            and mmengine_version() < MMENGINE_WEIGHTS_ONLY_FIX)


def check_resume_loadable(runner, owner: str) -> None:
    """Fail before resuming when the load is bound to fail, naming the fix.

    mmengine up to 0.10.7 calls ``torch.load`` without
    ``weights_only=False`` (:func:`resume_load_fails`);
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
    if not resume_load_fails():
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
