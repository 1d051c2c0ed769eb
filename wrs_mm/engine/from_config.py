"""A model and real training batches from any OpenMMLab config, for the
analysis tools (mmdet, mmseg or counting configs alike)."""
import tempfile
from typing import Callable, Iterator, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner import Runner


def build_from_config(cfg: Config, checkpoint: Optional[str] = None,
                      work_dir: Optional[str] = None
                      ) -> Tuple[torch.nn.Module, Iterator, Callable]:
    """The config's model (checkpoint loaded, else its own init), an iterator
    over its train dataloader, and ``loss(batch)`` for a training forward.

    Goes through ``Runner.from_cfg`` so that everything a training run does to
    the model (scope, SyncBN to BN on one process, data preprocessor) is done.
    """
    cfg = cfg.copy()
    cfg.work_dir = work_dir or tempfile.mkdtemp(prefix='wrs_mm_')
    cfg.launcher = 'none'
    cfg.log_level = 'WARNING'  # the tools print their own output
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    runner = Runner.from_cfg(cfg)
    model = runner.model
    if checkpoint:
        runner.load_checkpoint(checkpoint, map_location='cpu')
    else:
        model.init_weights()
    model.train()
    batches = iter(runner.train_dataloader)

    def loss(batch) -> torch.Tensor:
        data = model.data_preprocessor(batch, True)
        return model.parse_losses(model(**data, mode='loss'))[0]

    return model, batches, loss
