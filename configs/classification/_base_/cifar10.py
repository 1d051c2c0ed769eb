# CIFAR-10 from its Python batches (data/cifar10/cifar-10-batches-py/), batch
# 100, the augmentation of Liu et al. 2021 Supp. B.2: horizontal flip, random
# brightness / contrast / saturation / hue, random 32 x 32 crop of the image
# zero-padded to 38 x 38. Top-1 accuracy on the 10,000 test images.
dataset_type = 'CIFARDataset'
data_root = 'data/cifar10/'
num_classes = 10
train_pipeline = [
    dict(type='LoadClsImage'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomColorJitter'),
    dict(type='RandomPadCrop', size=32, padding=3),
    dict(type='PackClsInputs')
]
test_pipeline = [dict(type='LoadClsImage'), dict(type='PackClsInputs')]
train_dataloader = dict(
    batch_size=100,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=500,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=1)
test_evaluator = val_evaluator
# RGB uint8 in, normalised with the CIFAR-10 training-set statistics
data_preprocessor = dict(
    type='ImgDataPreprocessor',
    mean=[125.3, 123.0, 113.9],
    std=[63.0, 62.1, 66.7])
