# Faster R-CNN WS-R-50-FPN with the eps-shifted L2 regularizer on every
# weight-standardised conv (Li et al. Sec. 5, Table VIII: 37.7 -> 37.9 AP with
# WS-ResNet-50): lambda/2 [(n-1)(std_j - eps)^2 + n mean_j^2] per output
# channel, eps 1e-3, lambda = the configured weight decay 1e-4, coupled with
# SGD as in the authors' code; the WS convs lose their plain decay.
_base_ = './faster-rcnn_r50_fpn_gn-ws-all_wd_1x_coco.py'

optim_wrapper = dict(
    constructor='WRSOptimWrapperConstructor',
    paramwise_cfg=dict(shifted_reg=dict(eps=1e-3, p=2, mode='coupled')))
