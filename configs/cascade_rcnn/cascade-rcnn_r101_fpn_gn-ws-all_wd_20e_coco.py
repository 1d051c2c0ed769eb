# Cascade R-CNN WS-R-101-FPN, plain weight decay (Li et al. Table VII: 43.2
# AP).
_base_ = './cascade-rcnn_r50_fpn_gn-ws-all_wd_20e_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://jhu/resnet101_gn_ws')))
