# Mask R-CNN WS-R-50-FPN with weight rescaling (tau = 10) on the WS convs.
_base_ = './mask-rcnn_r50_fpn_gn-ws-all_wd_2x_coco.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=10)]
