# Cascade R-CNN R-50-FPN, 20 epochs (lr steps at 16 and 19), with
# weight-standardised convs and GroupNorm in backbone and neck, plain weight
# decay: the "WS" baseline of Li et al. Table VII (41.6 AP with WS-ResNet-50).
# SGD lr 0.02, momentum 0.9, weight decay 1e-4.
_base_ = [
    'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_20e_coco.py',
    '../_base_/gn_ws_all.py'
]

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

model = dict(backbone=_base_.gn_ws_backbone, neck=_base_.gn_ws_neck)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
