# CSRNet (VGG-16 front end + dilated back end, BatchNorm after every conv but
# the output one) with the Bayesian loss (sigma 8; set background_margin for
# Bayesian+), front end from torchvision's ImageNet VGG-16-BN.
model = dict(
    type='CSRNet',
    batch_norm=True,
    loss=dict(type='BayesianLoss', sigma=8., background_margin=None),
    frontend_init_cfg=dict(
        type='Pretrained', checkpoint='torchvision://vgg16_bn'),
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=8))
