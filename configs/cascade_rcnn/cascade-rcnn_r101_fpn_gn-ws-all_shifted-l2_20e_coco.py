# Cascade R-CNN WS-R-101-FPN + eps-shifted L2 (Li et al. Table VII: 43.2 ->
# 43.5 AP).
_base_ = './cascade-rcnn_r101_fpn_gn-ws-all_wd_20e_coco.py'

optim_wrapper = dict(
    constructor='WRSOptimWrapperConstructor',
    paramwise_cfg=dict(shifted_reg=dict(eps=1e-3, p=2, mode='coupled')))
