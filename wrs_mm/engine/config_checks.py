"""Checks of a user's config that mmengine does not make."""
from typing import List

from mmengine.config import Config


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
