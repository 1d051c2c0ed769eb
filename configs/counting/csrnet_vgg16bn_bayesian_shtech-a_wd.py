# CSRNet-BN + Bayesian loss on ShanghaiTech part A, plain weight decay. Part A
# images are small (some under 512 px), so crops are 256 x 256 and the short
# side is raised to 256, as in the Bayesian-loss code.
_base_ = './csrnet_vgg16bn_bayesian_ucf-qnrf_wd.py'

data_root = 'data/ShanghaiTech/part_A/'
crop_size = 256
train_pipeline = [
    dict(type='LoadCrowdImage'),
    dict(type='ResizeCrowd', max_long=2048, min_short=crop_size),
    dict(type='RandomCropCrowd', size=crop_size),
    dict(type='RandomFlipCrowd', prob=0.5),
    dict(type='PackCrowdInputs')
]
train_dataloader = dict(
    dataset=dict(
        type='ShanghaiTechDataset',
        data_root=data_root,
        split='train_data',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='ShanghaiTechDataset', data_root=data_root, split='test_data'))
test_dataloader = val_dataloader
