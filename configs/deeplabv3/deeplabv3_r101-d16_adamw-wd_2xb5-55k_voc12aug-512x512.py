# DeepLabv3 R-101, output stride 16, on augmented PASCAL VOC 2012 with AdamW
# and plain weight decay: the WD twin of the WRS config (Liu et al. 2021, Supp.
# B.4): AdamW lr 1e-4, weight decay 2e-4, poly schedule to 1e-6, batch 10 in
# total, 52 epochs of the 10,582 training images (55k iterations), BN trained
# (mmseg's default norm_eval=False).
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-40k_voc12aug-512x512.py'

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)),  # OS 16
    decode_head=dict(dilations=(1, 6, 12, 18)))
train_dataloader = dict(batch_size=5)  # x 2 GPUs = 10

max_iters = 55000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=2e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-6,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000))
