# Mask R-CNN R-50-FPN with weight-standardised convs and GroupNorm in backbone,
# neck, box and mask heads (mmdet's gn-ws-all 2x recipe restated: there is no
# 1x one), plain weight decay: the baseline of Li et al. Table VIII.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py'

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

conv_cfg = dict(type='ConvWS')
norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(
    backbone=dict(
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://jhu/resnet50_gn_ws')),
    neck=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg),
        mask_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
