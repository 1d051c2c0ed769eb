"""What ``tools/train.py`` / ``tools/test.py`` do to a config beyond mmdet's own
tools: resume under torch >= 2.6, and multi-process runs without CUDA."""
import os

import torch


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
