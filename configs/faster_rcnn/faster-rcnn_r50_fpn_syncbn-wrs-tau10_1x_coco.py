# Faster R-CNN R-50-FPN (mmdet's 1x config, ImageNet-pretrained backbone) with
# its backbone BatchNorm trained, and weight rescaling. mmdet's default BN
# normalises with frozen running statistics (norm_eval=True; its affine
# parameters train): then no backbone conv is scale-invariant and WRS would
# rescale nothing. Here the backbone BN trains, as SyncBN (2 images per GPU
# are too few for per-GPU batch statistics; on one process mmengine reverts
# it to BN); frozen_stages=1 stays, so the stem and
# layer1 keep their pretrained weights and are reported frozen. Every 10
# steps each conv of layer2-4 (each followed by a trained BN) is rescaled,
# row by row, to the RMS of its pretrained row norms (target_norm='init': the
# effective lr stays the one the schedule was tuned for); FPN, RPN and box
# head have no BN and keep weight decay. Start-up table at the real input
# size: docs/en/user_guides/recipes.md.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['wrs_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        norm_cfg=dict(type='SyncBN', requires_grad=True), norm_eval=False))
optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [
    dict(type='WeightRescaleHook', interval=10, target_norm='init')
]
