# UCF-QNRF (data/UCF-QNRF_ECCV18/{Train,Test}/img_XXXX.jpg + _ann.mat), long
# side capped at 2048, 512 x 512 random crops with flips for training; MAE /
# MSE on the whole test images.
data_root = 'data/UCF-QNRF_ECCV18/'
crop_size = 512
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
    dataset=dict(
        type='UCFQNRFDataset',
        data_root=data_root,
        split='Train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='UCFQNRFDataset',
        data_root=data_root,
        split='Test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CountingMetric')
test_evaluator = val_evaluator
