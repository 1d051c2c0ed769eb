# YOLOv3 Darknet-53 on COCO with plain weight decay: the WD twin of the WRS
# config (Liu et al. 2021, Supp. B.3): SGD momentum, lr 0.01 with a cosine
# schedule, batch 8 in total, multi-scale input 320-640, 100 epochs, weight
# decay 5e-4, BatchNorm trained throughout (mmdet's Darknet freezes BN
# statistics by default: norm_eval=True).
_base_ = 'mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py'

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

model = dict(backbone=dict(norm_eval=False))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Expand', mean=[0, 0, 0], to_rgb=True, ratio_range=(1, 2)),
    dict(
        type='MinIoURandomCrop',
        min_ious=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        min_crop_size=0.3),
    dict(type='RandomResize', scale=[(320, 320), (640, 640)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(640, 640), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 100
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2000),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        eta_min=0.)
]
# mAP@0.5 is what the paper reports (bbox_mAP_50 in the log)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=8)
