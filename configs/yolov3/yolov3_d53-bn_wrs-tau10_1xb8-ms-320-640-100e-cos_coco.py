# YOLOv3 with weight rescaling (Liu et al. 2021, Sec. 6 / Supp. B.3): every 10
# optimizer steps each conv kernel followed by a (trained) BatchNorm is
# rescaled to unit norm per output channel and gets no weight decay; BN gammas,
# biases and the three output convs keep weight decay 5e-4. Paper: WRS +2.2
# mAP@0.5 over WD (Fig. 9b).
_base_ = './yolov3_d53-bn_wd_1xb8-ms-320-640-100e-cos_coco.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=10)]
