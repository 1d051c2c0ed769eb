"""Run the shipped configs at CPU scale on the small real data sets: shrink a
config (small images, few images and iterations, constant lr, no pretrained
weights, deterministic pipeline), train and evaluate it through the real
mmengine Runner. Used by the tests and by ``tools/demo.py``; the data is found
by :func:`~wrs_mm.testing.paths.data_root`.
"""
import json
import os

import cv2
import numpy as np
from mmengine.config import Config
from mmengine.registry import DATASETS
from mmengine.runner import Runner

from .paths import coco_root, data_root, repo_root
from .runner_utils import unique_experiment_name

# COCO category name -> PASCAL VOC class index (all 20 VOC classes exist in
# COCO)
VOC_FROM_COCO = {
    'airplane': 1,
    'bicycle': 2,
    'bird': 3,
    'boat': 4,
    'bottle': 5,
    'bus': 6,
    'car': 7,
    'cat': 8,
    'chair': 9,
    'cow': 10,
    'dining table': 11,
    'dog': 12,
    'horse': 13,
    'motorcycle': 14,
    'person': 15,
    'potted plant': 16,
    'sheep': 17,
    'couch': 18,
    'train': 19,
    'tv': 20
}
RANDOM_AUG = ('Expand', 'MinIoURandomCrop', 'RandomFlip',
              'PhotoMetricDistortion', 'RandomCrop')


def all_configs():
    """The checkout's OpenMMLab configs (``_base_`` excepted), relative to
    it; ``configs/detectron2`` holds Detectron2's (tests/test_detectron2.py
    trains them)."""
    root, out = repo_root(), []
    for d, _, files in os.walk(os.path.join(root, 'configs')):
        rel = os.path.relpath(d, root)
        out += [
            os.path.join(rel, f) for f in files if f.endswith('.py')
            and '_base_' not in d and not rel.startswith('configs/detectron2')
        ]
    return sorted(out)


def _shrink_pipeline(pipeline, size):
    """Deterministic and small: random augmentations out, scales to size."""
    out = []
    for t in pipeline:
        if t['type'] in RANDOM_AUG:
            continue
        t = dict(t)
        if t['type'] == 'RandomResize':
            t = dict(type='Resize', scale=(size, size), keep_ratio=True)
        elif 'scale' in t:
            t['scale'] = (size, size)
        if t['type'] == 'Pad':
            t['size'] = (size, size)
        out.append(t)
    return out


def _common(cfg, work_dir, batch_size=2, wrs_interval=3):
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.pop('visualization', None)
    cfg.experiment_name = unique_experiment_name(
        os.path.basename(str(work_dir).rstrip('/')))
    cfg.param_scheduler = []  # constant lr: a few steps must make progress
    cfg.randomness = dict(seed=0)
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'WeightRescaleHook' and wrs_interval:
            hook['interval'] = wrs_interval  # act within the few iterations
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg[key]
        dl.num_workers = 0
        dl.persistent_workers = False
        dl.batch_size = batch_size if key == 'train_dataloader' else 1
        dl.pop('batch_sampler', None)
        dl.sampler = dict(type='DefaultSampler', shuffle=False) if \
            key != 'train_dataloader' or 'max_epochs' in cfg.train_cfg else \
            dict(type='InfiniteSampler', shuffle=False)


def shrink_det(cfg: Config,
               work_dir,
               size=128,
               epochs=3,
               depth=None,
               images=2,
               batch_size=2):
    """COCO detector: ``images`` train and val images of coco_tiny (``None``:
    all it holds), ``batch_size`` per iteration, ``epochs`` epochs."""
    # the loop first: _common picks the samplers from it (an iteration-based
    # config's InfiniteSampler would never end an epoch)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    _common(cfg, work_dir, batch_size)
    cfg.model.backbone.init_cfg = None
    if depth:
        cfg.model.backbone.depth = depth
    for key, split in (('train_dataloader', 'train'),
                       ('val_dataloader', 'val'), ('test_dataloader', 'val')):
        ds = cfg[key].dataset
        ds.data_root = coco_root()
        ds.ann_file = f'annotations/instances_{split}2017.json'
        ds.data_prefix = dict(img=f'{split}2017/')
        ds.indices = images
        ds.pipeline = _shrink_pipeline(ds.pipeline, size)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = coco_root() + 'annotations/instances_val2017.json'
    _small_heads(cfg.model.get('train_cfg'))
    _small_heads(cfg.model.get('test_cfg'))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs)
    return cfg


def make_voc_from_coco(out_dir, n_train=4, n_val=2, size=96):
    """A PASCAL-VOC-layout segmentation set from coco_tiny's real images,
    their instance masks rasterised into the 20 VOC classes (0 background)."""
    from pycocotools.coco import COCO as CocoApi
    coco = coco_root()
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    for split, n in (('train', n_train), ('val', n_val)):
        api = CocoApi(f'{coco}annotations/instances_{split}2017.json')
        cats = {
            c['id']: VOC_FROM_COCO.get(c['name'], 0)
            for c in api.loadCats(api.getCatIds())
        }
        ids = []
        for img_id in sorted(api.getImgIds()):
            anns = api.loadAnns(api.getAnnIds(imgIds=img_id, iscrowd=False))
            if not any(cats[a['category_id']] for a in anns):
                continue
            info = api.loadImgs(img_id)[0]
            img = cv2.imread(f"{coco}{split}2017/{info['file_name']}")
            label = np.zeros(img.shape[:2], np.uint8)
            for a in sorted(anns, key=lambda a: -a['area']):
                if cats[a['category_id']]:
                    label[api.annToMask(a) > 0] = cats[a['category_id']]
            name = f'{split}_{img_id:012d}'
            cv2.imwrite(
                os.path.join(out_dir, 'JPEGImages', name + '.jpg'),
                cv2.resize(img, (size, size)))
            cv2.imwrite(
                os.path.join(out_dir, 'SegmentationClass', name + '.png'),
                cv2.resize(
                    label, (size, size), interpolation=cv2.INTER_NEAREST))
            ids.append(name)
            if len(ids) == n:
                break
        with open(
                os.path.join(out_dir, 'ImageSets/Segmentation',
                             split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return out_dir


def shrink_seg(cfg: Config, work_dir, voc_root, size=64, iters=3, depth=50):
    """mmseg segmentor on the VOC-format set: a few iterations."""
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    _common(cfg, work_dir)
    cfg.model.pretrained = None
    cfg.model.backbone.depth = depth
    cfg.model.data_preprocessor.size = (size, size)
    cfg.data_preprocessor = cfg.model.data_preprocessor
    for key, split in (('train_dataloader', 'train'),
                       ('val_dataloader', 'val'), ('test_dataloader', 'val')):
        base = cfg[key].dataset
        pipeline = base.pipeline if 'pipeline' in base else \
            base.datasets[0].pipeline
        cfg[key].dataset = dict(
            type='PascalVOCDataset',
            data_root=voc_root,
            data_prefix=dict(
                img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file=f'ImageSets/Segmentation/{split}.txt',
            pipeline=_shrink_pipeline(pipeline, size))
        if key != 'train_dataloader':
            cfg[key].dataset.pipeline = [
                t for t in cfg[key].dataset.pipeline
                if t['type'] != 'TestTimeAug'
            ]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=iters)
    return cfg


# train_cfg / test_cfg keys of two-stage detectors -> CPU-sized values
_FEWER = dict(num=64, nms_pre=300, max_per_img=100)


def _small_heads(cfg_node) -> None:
    """Score thresholds to 0 (a detector trained for a few iterations still
    outputs boxes for the metric to evaluate), and fewer proposals and
    sampled RoIs (R-CNN heads dominate the CPU time at small image sizes)."""
    if isinstance(cfg_node, dict):
        for k, v in cfg_node.items():
            if k in ('score_thr', 'conf_thr'):
                cfg_node[k] = 0.
            elif k in _FEWER and isinstance(v, int):
                cfg_node[k] = min(v, _FEWER[k])
            else:
                _small_heads(v)
    elif isinstance(cfg_node, (list, tuple)):
        for v in cfg_node:
            _small_heads(v)


def train_and_test(cfg: Config):
    """Train, then evaluate with the config's test evaluator (no validation
    during training). Returns the runner, the training losses and metrics."""
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = list(runner.message_hub.get_scalar('train/loss').data[0])
    metrics = runner.test()
    with open(os.path.join(cfg.work_dir, 'metrics.json'), 'w') as f:
        json.dump(metrics, f, default=float)
    return runner, losses, metrics


def shrink_counting(cfg: Config,
                    work_dir,
                    data_root,
                    crop=128,
                    epochs=3,
                    batch_size=4,
                    test_long_side=320,
                    lr=1e-3,
                    images=None):
    """Counting config on a ShanghaiTech-layout set (``data_root`` with
    ``train_data`` / ``test_data``): the first ``images`` training images
    (None: all), ``crop`` px crops, ``epochs`` epochs, test images scaled to
    ``test_long_side``, no pretrained weights."""
    cfg.model.frontend_init_cfg = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    _common(cfg, work_dir, batch_size, wrs_interval=None)  # keep tau
    cfg.optim_wrapper.optimizer.lr = lr
    for key, split in (('train_dataloader', 'train_data'),
                       ('val_dataloader', 'test_data'), ('test_dataloader',
                                                         'test_data')):
        ds = cfg[key].dataset
        ds.type = 'ShanghaiTechDataset'
        ds.data_root = data_root
        ds.split = split
        if key == 'train_dataloader' and images:
            ds.indices = images
        for t in ds.pipeline:
            if t['type'] == 'RandomCropCrowd':
                t['size'] = crop
            if t['type'] == 'ResizeCrowd':
                t['min_short'] = crop if key == 'train_dataloader' else None
                if key != 'train_dataloader':
                    t['max_long'] = test_long_side
    cfg.train_dataloader.collate_fn = dict(type='default_collate')
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=epochs, save_best='mae', rule='less')
    return cfg


def cifar_subset_root() -> str:
    """``cifar10_subset/`` (class folders ``train/`` and ``test/``)."""
    return os.path.join(data_root(), 'cifar10_subset')


def dataset_class_sizes(split: dict) -> list:
    """The number of images of each class in the classification data set
    config ``split`` (``ImageFolderDataset`` or ``CIFARDataset``), in label
    order."""
    dataset = DATASETS.build(dict(split, lazy_init=True))
    return [len(items) for items in dataset.items_by_class()[1]]


def class_sizes(split: str) -> list:
    """:func:`dataset_class_sizes` of the CIFAR-10 subset's ``split``
    (``'train'`` or ``'test'``)."""
    return dataset_class_sizes(
        dict(
            type='ImageFolderDataset',
            data_root=cifar_subset_root(),
            data_prefix=split))


def spread_over_classes(split: str, n: int) -> list:
    """``n`` dataset indices of the CIFAR-10 subset's ``split`` that cycle
    through the 10 classes (the data set lists its classes one after the
    other), evenly spaced within each class, so every batch mixes them."""
    sizes = class_sizes(split)
    if n % len(sizes) or n // len(sizes) > min(sizes):
        raise ValueError(
            f'{n} {split} images: need a multiple of {len(sizes)} classes, '
            f'at most {min(sizes)} a class ({cifar_subset_root()})')
    starts = np.cumsum([0] + sizes[:-1])
    step = min(sizes) * len(sizes) // n
    return [
        int(start) + k * step for k in range(n // len(sizes))
        for start in starts
    ]


def shrink_cls(cfg: Config,
               work_dir,
               images=(40, 20),
               epochs=3,
               batch_size=20,
               width=None,
               augment=False,
               lr=None):
    """Classification config on the shipped CIFAR-10 subset: ``images`` =
    (train, test) images spread over the classes, ``epochs`` epochs, backbone
    widths times ``width`` (None: as configured), the lr set to ``lr`` (None:
    scaled to the batch size by ``auto_scale_lr``'s linear rule), the random
    augmentation kept only with ``augment``."""
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    _common(cfg, work_dir, batch_size)
    cfg.optim_wrapper.optimizer.lr = lr or cfg.optim_wrapper.optimizer.lr * \
        batch_size / cfg.auto_scale_lr.base_batch_size
    if width is not None:
        cfg.model.backbone.width = width
    for key, split, n in (('train_dataloader', 'train',
                           images[0]), ('val_dataloader', 'test', images[1]),
                          ('test_dataloader', 'test', images[1])):
        pipeline = cfg.train_pipeline if key == 'train_dataloader' and \
            augment else cfg.test_pipeline
        cfg[key].dataset = dict(
            type='ImageFolderDataset',
            data_root=cifar_subset_root(),
            data_prefix=split,
            indices=spread_over_classes(split, n),
            pipeline=pipeline)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs)
    return cfg
