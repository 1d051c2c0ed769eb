# CSRNet-BN + Bayesian loss on UCF-QNRF, plain weight decay: the WD baseline of
# Liu et al. 2021 (Sec. 6.2, Supp. B.5): Adam lr 1e-4, weight decay 1e-4, batch
# 32, 512 x 512 crops, 300 epochs, long side capped at 2048; the best
# checkpoint by validation MAE. Paper: MAE 103.84, MSE 176.28.
_base_ = [
    './_base_/csrnet_vgg16bn_bayesian.py', './_base_/ucf_qnrf.py',
    './_base_/schedule_adam_300e.py', './_base_/default_runtime.py'
]
