"""Real mmdet / mmseg models built from their installed configs (no pretrained
weights) and one real training batch from coco_tiny."""
import os
import tempfile

import cv2
import torch
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from ..apis.from_config import strip_pretrained
from ..apis.launch import read_config
from .paths import coco_root
from .small_scale import make_voc_from_coco

#: detectors whose BN layers train (``norm_eval=False``), so that their convs
#: are scale-invariant: name -> (installed config, model overrides)
BN_TRAINED_DETECTORS = {
    'yolov3_d53': ('mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py', {
        'backbone.norm_eval': False
    }),
    'faster_rcnn_r50': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', {
        'backbone.norm_eval': False,
        'backbone.frozen_stages': -1
    }),
}


def det_model_and_loss(config: str,
                       size=192,
                       batch=2,
                       with_mask=False,
                       model_overrides=None):
    """Build the detector of ``config`` (an ``mmdet::`` path or an absolute
    one) and a callable returning its training loss on real COCO images."""
    from mmdet.registry import DATASETS, MODELS
    init_default_scope('mmdet')
    cfg = read_config(config)
    if model_overrides:
        cfg.merge_from_dict({
            'model.' + k: v
            for k, v in model_overrides.items()
        })
    model_cfg = cfg.model
    strip_pretrained(model_cfg)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    dataset = DATASETS.build(
        dict(
            type='CocoDataset',
            data_root=coco_root(),
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(
                    type='LoadAnnotations',
                    with_bbox=True,
                    with_mask=with_mask),
                dict(type='Resize', scale=(size, size), keep_ratio=True),
                dict(type='PackDetInputs')
            ]))
    data = pseudo_collate([dataset[i] for i in range(batch)])
    model.train()

    def loss():
        batch_data = model.data_preprocessor(data, True)
        return model.parse_losses(model(**batch_data, mode='loss'))[0]

    return model, loss


def seg_model_and_loss(config: str, size=64, batch=2):
    """The segmentor of ``config`` (SyncBN reverted to BN) and its loss on
    real COCO images with VOC labels rasterised from their instance masks
    (:func:`~wrs_mm.testing.small_scale.make_voc_from_coco`)."""
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    cfg = read_config(config)
    cfg.model.pretrained = None
    cfg.model.data_preprocessor.size = (size, size)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    voc = make_voc_from_coco(
        tempfile.mkdtemp(), n_train=batch, n_val=1, size=size)
    with open(os.path.join(voc, 'ImageSets/Segmentation/train.txt')) as f:
        names = f.read().split()
    imgs, samples = [], []
    for name in names:
        img = cv2.imread(os.path.join(voc, 'JPEGImages', name + '.jpg'))
        label = cv2.imread(
            os.path.join(voc, 'SegmentationClass', name + '.png'),
            cv2.IMREAD_GRAYSCALE)
        imgs.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.from_numpy(label)[None].long())
        s.set_metainfo(
            dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size)))
        samples.append(s)
    data = dict(inputs=imgs, data_samples=samples)
    model.train()

    def loss():
        batch_data = model.data_preprocessor(data, True)
        return model.parse_losses(model(**batch_data, mode='loss'))[0]

    return model, loss
