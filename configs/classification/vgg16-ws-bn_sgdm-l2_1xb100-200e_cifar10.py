# VGG16-BN with every conv weight-standardised (mmcv ConvWS2d, still followed
# by its BatchNorm), SGDM with plain L2 5e-4 on every parameter (coupled: SGD
# adds it to the gradient). Li et al. Table II's setting: WS weights under L2
# shrink towards zero and their effective learning rate grows without bound.
# Baseline of vgg16-ws-bn_sgdm-shifted-l2_1xb100-200e_cifar10.py.
_base_ = './vgg16-bn_sgdm-wd_1xb100-200e_cifar10.py'

model = dict(backbone=dict(conv_cfg=dict(type='ConvWS')))
