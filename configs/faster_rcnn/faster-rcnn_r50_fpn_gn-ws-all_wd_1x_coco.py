# Faster R-CNN R-50-FPN with weight-standardised convs (mmcv ConvWS) and
# GroupNorm in backbone, neck and box head (mmdet's gn-ws-all recipe), plain
# weight decay: the baseline of Li et al. Table VIII (SGD lr 0.02, momentum
# 0.9, wd 1e-4, mmdet 1x).
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/gn_ws_all.py'
]

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

model = dict(
    backbone=_base_.gn_ws_backbone,
    neck=_base_.gn_ws_neck,
    roi_head=dict(bbox_head=_base_.gn_ws_bbox_head))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
