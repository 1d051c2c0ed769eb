"""CSRNet with BatchNorm for point-supervised counting.

Li, Zhang, Chen, "CSRNet: Dilated Convolutional Neural Networks for
Understanding the Highly Congested Scenes", CVPR 2018: the first 10 convs of
VGG-16 (3 max-pools, output stride 8) and a back end of six 3x3 convs with
dilation 2, then a 1x1 conv to one density channel. As in Liu et al. 2021
(Sec. 6.2, Supp. B.5) every conv but the output one is followed by BatchNorm
(``batch_norm=True``), so WRS can rescale all of them. The front end's modules
are named as torchvision's ``vgg16_bn.features.0`` ... ``features.32``, so its
ImageNet weights load with ``frontend_init_cfg=dict(type='Pretrained',
checkpoint='torchvision://vgg16_bn')`` (the classifier and deeper features
are reported as unused keys). The density is made non-negative with
``abs`` as in the Bayesian-loss code, and trained with ``loss`` (default
:class:`~wrs_mm.counting.bayesian_loss.BayesianLoss`).
"""
from typing import List, Optional

import torch
from mmengine.model import BaseModel, BaseModule
from mmengine.registry import MODELS
from torch import nn
from torch.nn import functional as F

FRONTEND = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512)
BACKEND = (512, 512, 512, 256, 128, 64)


def _convs(cfg, in_ch: int, dilation: int, batch_norm: bool) -> nn.Sequential:
    layers: List[nn.Module] = []
    for v in cfg:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(
            nn.Conv2d(in_ch, v, 3, padding=dilation, dilation=dilation))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_ch = v
    return nn.Sequential(*layers)


class _Frontend(BaseModule):
    """VGG-16 first 10 convs (torchvision ``features`` indices)."""

    def __init__(self, batch_norm: bool, init_cfg=None):
        super().__init__(init_cfg)
        self.features = _convs(FRONTEND, 3, 1, batch_norm)

    def forward(self, x):
        return self.features(x)


@MODELS.register_module()
class CSRNet(BaseModel):
    """CSRNet as an mmengine model.

    Args:
        batch_norm (bool): BatchNorm after every conv but the output one.
        loss (dict): the training loss, built from ``MODELS``; called as
            ``loss(density, points, stride)``. Defaults to
            ``dict(type='BayesianLoss')`` (sigma 8, no background).
        test_tile (int, optional): predict in non-overlapping tiles of this
            size (multiple of 8) to bound memory on huge images; None for the
            whole image at once.
        frontend_init_cfg (dict, optional): e.g. the torchvision VGG-16-BN
            weights (see the module docstring).
    """
    stride = 8

    def __init__(self,
                 batch_norm: bool = True,
                 loss: dict = dict(type='BayesianLoss'),
                 test_tile: Optional[int] = None,
                 frontend_init_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if test_tile is not None and test_tile % self.stride:
            raise ValueError(f'CSRNet: test_tile must be a multiple of '
                             f'{self.stride}, got {test_tile}')
        self.loss = MODELS.build(loss)
        self.test_tile = test_tile
        self.frontend = _Frontend(batch_norm, frontend_init_cfg)
        self.backend = _convs(BACKEND, 512, 2, batch_norm)
        self.output_layer = nn.Conv2d(64, 1, 1)
        for m in self.backend.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.output_layer.weight, std=0.01)
        nn.init.zeros_(self.output_layer.bias)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H/8, W/8)`` density (cells of 8 x 8 input pixels)."""
        return self.output_layer(self.backend(self.frontend(x))).abs()

    def forward(self,
                inputs: torch.Tensor,
                data_samples=None,
                mode: str = 'tensor'):
        if mode == 'loss':
            dens = self.density(inputs)
            return dict(
                loss_bayes=self.loss(dens, [s.gt_points for s in data_samples],
                                     self.stride))
        if mode == 'predict':
            dens = self._predict_density(inputs)
            for d, s in zip(dens, data_samples):
                h, w = s.img_shape
                d = d[:, :-(-h // self.stride), :-(-w // self.stride)]
                s.pred_density = d[0].detach()
                s.pred_count = d.sum().detach()
            return data_samples
        return self.density(inputs)

    def _predict_density(self, x: torch.Tensor) -> torch.Tensor:
        if self.test_tile is None:
            return self.density(x)
        t = self.test_tile
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % t, 0, -h % t))
        rows = []
        for i in range(0, x.shape[-2], t):
            rows.append(
                torch.cat([
                    self.density(x[..., i:i + t, j:j + t])
                    for j in range(0, x.shape[-1], t)
                ], -1))
        return torch.cat(rows, -2)
