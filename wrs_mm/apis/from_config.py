"""A model and training batches from any OpenMMLab config, for the analysis
tools (mmdet, mmseg or counting configs alike)."""
import tempfile
from typing import Callable, Iterator, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner import Runner


def strip_pretrained(node) -> int:
    """Remove ``init_cfg=dict(type='Pretrained', ...)`` entries and set
    ``pretrained=None`` everywhere in a (model) config, in place, so that
    nothing is downloaded; returns how many were removed."""
    removed = 0
    if isinstance(node, dict):
        init = node.get('init_cfg')
        inits = init if isinstance(init, list) else [init]
        if any(
                isinstance(i, dict) and i.get('type') == 'Pretrained'
                for i in inits):
            node['init_cfg'] = None
            removed += 1
        if node.get('pretrained'):
            node['pretrained'] = None
            removed += 1
        for value in node.values():
            removed += strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            removed += strip_pretrained(value)
    return removed


def build_from_config(
    cfg: Config,
    checkpoint: Optional[str] = None,
    work_dir: Optional[str] = None,
    pretrained: bool = True,
    synthetic: Optional[Tuple[int, int]] = None,
) -> Tuple[torch.nn.Module, Iterator, Callable]:
    """The config's model (checkpoint loaded, else its own init), an iterator
    over training batches, and ``loss(batch)`` for a training forward.

    Goes through ``Runner.from_cfg`` so that everything a training run does to
    the model (scope, SyncBN to BN on one process, data preprocessor) is done.
    The message hub is at iteration 0, as in training (batch augmentations
    such as YOLOX's ``BatchSyncRandomResize`` read it).

    Args:
        pretrained: keep the config's ``Pretrained`` init (a download); with
            False the model starts from its random init.
        synthetic: ``(height, width)``: random images with random targets
            (mmdet: four boxes of class 1; mmseg: random label maps; wrs_mm's
            ``ImageClassifier``: random labels) instead of the train
            dataloader, for configs whose data is not on disk.
    """
    cfg = cfg.copy()
    if not pretrained:
        strip_pretrained(cfg.model)
    cfg.work_dir = work_dir or tempfile.mkdtemp(prefix='wrs_mm_')
    cfg.launcher = 'none'
    cfg.log_level = 'WARNING'  # the tools print their own output
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    runner = Runner.from_cfg(cfg)
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 0)
    hub.update_info('epoch', 0)
    model = runner.model
    if checkpoint:
        runner.load_checkpoint(checkpoint, map_location='cpu')
    else:
        model.init_weights()
    model.train()
    if synthetic is None:
        batches = iter(runner.train_dataloader)
    else:
        batch_size = cfg.train_dataloader.get('batch_size', 2)
        batches = _synthetic_batches(cfg, model, batch_size, *synthetic)

    def loss(batch) -> torch.Tensor:
        data = model.data_preprocessor(batch, True)
        return model.parse_losses(model(**data, mode='loss'))[0]

    return model, batches, loss


def _synthetic_batches(cfg: Config, model, batch_size: int, h: int, w: int):
    """Endless random batches in the layout the config's dataloader gives."""
    scope = cfg.get('default_scope')
    gen = torch.Generator().manual_seed(0)
    while True:
        if scope == 'mmdet':
            from mmdet.testing import demo_mm_inputs
            roi = getattr(model, 'roi_head', None)
            # demo_mm_inputs draws labels in [1, num_classes): class 1
            yield demo_mm_inputs(
                batch_size,
                image_shapes=(3, h, w),
                num_items=[4] * batch_size,
                num_classes=2,
                with_mask=bool(getattr(roi, 'with_mask', False)))
        elif scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            classes = model.decode_head.num_classes
            inputs, samples = [], []
            for _ in range(batch_size):
                inputs.append(
                    torch.randint(
                        0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
                sample = SegDataSample()
                sample.gt_sem_seg = PixelData(
                    data=torch.randint(0, classes, (1, h, w), generator=gen))
                sample.set_metainfo(
                    dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
                samples.append(sample)
            yield dict(inputs=inputs, data_samples=samples)
        elif cfg.model.type == 'ImageClassifier':
            from mmengine.structures import BaseDataElement
            inputs = torch.randint(
                0,
                256, (batch_size, 3, h, w),
                generator=gen,
                dtype=torch.uint8)
            labels = torch.randint(
                0, cfg.model.num_classes, (batch_size, ), generator=gen)
            yield dict(
                inputs=list(inputs),
                data_samples=[BaseDataElement(gt_label=k) for k in labels])
        else:
            raise ValueError(
                'synthetic batches are made for mmdet and mmseg configs '
                "(default_scope 'mmdet' / 'mmseg') and wrs_mm's "
                f'ImageClassifier, not {scope!r} / {cfg.model.type!r}')
