# Mask R-CNN WS-R-50-FPN + eps-shifted L2 on the WS convs (Li et al.
# Table VIII: 38.6 -> 38.9 box AP), eps 1e-3, lambda 1e-4, coupled (SGD).
_base_ = './mask-rcnn_r50_fpn_gn-ws-all_wd_2x_coco.py'

optim_wrapper = dict(
    constructor='WRSOptimWrapperConstructor',
    paramwise_cfg=dict(shifted_reg=dict(eps=1e-3, p=2, mode='coupled')))
