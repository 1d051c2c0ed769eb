# CSRNet (VGG-16 front end + dilated back end, BatchNorm after every conv but
# the output one) trained with the Bayesian loss on UCF-QNRF, plain weight
# decay: the WD baseline of Liu et al. 2023 (Sec. 6.2, Supp. B.5): Adam lr 1e-4,
# weight decay 1e-4, batch 32, 512 x 512 crops, 300 epochs, long side capped
# at 2048; the best checkpoint by validation MAE. Paper: MAE 103.84, MSE 176.28.
custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)
default_scope = None

data_root = 'data/UCF-QNRF_ECCV18/'
crop_size = 512
model = dict(
    type='CSRNet',
    batch_norm=True,
    sigma=8.,
    background_margin=None,
    frontend_init_cfg=dict(type='Pretrained',
                           checkpoint='torchvision://vgg16_bn'),
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=8))

train_pipeline = [
    dict(type='LoadCrowdImage'),
    dict(type='ResizeCrowd', max_long=2048, min_short=crop_size),
    dict(type='RandomCropCrowd', size=crop_size),
    dict(type='RandomFlipCrowd', prob=0.5),
    dict(type='PackCrowdInputs')
]
test_pipeline = [
    dict(type='LoadCrowdImage'),
    dict(type='ResizeCrowd', max_long=2048),
    dict(type='PackCrowdInputs')
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='UCFQNRFDataset', data_root=data_root, split='Train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='UCFQNRFDataset', data_root=data_root, split='Test',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CountingMetric')
test_evaluator = val_evaluator

max_epochs = 300
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-4, weight_decay=1e-4))
param_scheduler = []

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2,
                    save_best='mae', rule='less'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
