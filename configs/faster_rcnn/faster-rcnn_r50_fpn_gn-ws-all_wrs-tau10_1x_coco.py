# Faster R-CNN WS-R-50-FPN with weight rescaling instead: the WS convs are
# scale-invariant (whatever the normalisation after them), so every 10 steps
# they are rescaled to unit norm per output channel and get no weight decay.
_base_ = './faster-rcnn_r50_fpn_gn-ws-all_wd_1x_coco.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=10)]
