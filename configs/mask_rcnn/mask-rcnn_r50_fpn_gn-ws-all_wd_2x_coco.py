# Mask R-CNN R-50-FPN with weight-standardised convs and GroupNorm in backbone,
# neck, box and mask heads (mmdet's gn-ws-all 2x recipe: there is no 1x one),
# plain weight decay: the baseline of Li et al. Table VIII.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py', '../_base_/gn_ws_all.py'
]

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

model = dict(
    backbone=_base_.gn_ws_backbone,
    neck=_base_.gn_ws_neck,
    roi_head=dict(
        bbox_head=_base_.gn_ws_bbox_head, mask_head=_base_.gn_ws_mask_head))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
