# The ResNet18 variant with BatchNorm after every conv (shortcuts included), on
# CIFAR-10 with weight decay 5e-4 on every parameter (SGD momentum 0.9, lr 0.1,
# batch 100, 200 epochs, lr x0.1 at epochs 60 / 120 / 160; Liu et al. 2021
# Table 1, Supp. B.2). Paper: 94.37 % top-1 (mean of 3 runs).
_base_ = [
    './_base_/cifar10.py', './_base_/schedule_sgdm_200e.py',
    './_base_/default_runtime.py'
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNetBN', arch='resnet18'),
    num_classes={{_base_.num_classes}},
    data_preprocessor={{_base_.data_preprocessor}})
