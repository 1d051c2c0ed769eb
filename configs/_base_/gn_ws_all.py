# What mmdet's gn+ws/ configs change in an R-50-FPN detector:
# weight-standardised convs (mmcv ConvWS) and GroupNorm in backbone, neck and
# heads, from the jhu GN+WS ImageNet weights. Restated here because
# 'mmdet::gn+ws/...' cannot be inherited ('+' fails mmengine's path check); a
# config lists this file next to its mmdet base and takes the parts with
# ``_base_.gn_ws_*``.
conv_cfg = dict(type='ConvWS')
norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
gn_ws_backbone = dict(
    conv_cfg=conv_cfg,
    norm_cfg=norm_cfg,
    init_cfg=dict(
        type='Pretrained', checkpoint='open-mmlab://jhu/resnet50_gn_ws'))
gn_ws_neck = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
gn_ws_bbox_head = dict(
    type='Shared4Conv1FCBBoxHead',
    conv_out_channels=256,
    conv_cfg=conv_cfg,
    norm_cfg=norm_cfg)
gn_ws_mask_head = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
