"""CIFAR backbones with BatchNorm after every convolution, as Liu et al. 2021
use them for Table 1 (Sec. 6.1, Supp. B.2): VGG16-BN, the ResNet18 variant
and WideResNet-28-10, every conv (shortcut projections included) followed by
a BatchNorm, so that every conv kernel is scale-invariant in training mode
and WRS can rescale all of them.

Both classes take a ``width`` multiplier for CPU-sized studies (channel
counts are scaled and rounded, at least 1) and a ``conv_cfg`` (mmcv's
``build_conv_layer``; e.g. ``dict(type='ConvWS')`` for weight-standardised
convs, Li et al.'s setting, each still followed by its BatchNorm). Each
returns the last feature map;
:class:`~wrs_mm.classification.classifier.ImageClassifier` pools it.
"""
from typing import Optional, Sequence, Union

from mmcv.cnn import build_conv_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

VGG_ARCHS = {
    'vgg11': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'vgg16': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512,
              'M', 512, 512, 512, 'M'),
}


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def conv_bn(in_ch: int,
            out_ch: int,
            kernel: int,
            stride: int = 1,
            conv_cfg: Optional[dict] = None):
    """A bias-free conv (``conv_cfg``; None: ``nn.Conv2d``) and its BatchNorm
    (the bias would be cancelled by the BN mean)."""
    return nn.Sequential(
        build_conv_layer(
            conv_cfg,
            in_ch,
            out_ch,
            kernel,
            stride,
            padding=kernel // 2,
            bias=False), nn.BatchNorm2d(out_ch))


@MODELS.register_module()
class VGGBN(BaseModule):
    """VGG with BatchNorm after every conv (3x3, padding 1) and ReLU; ``'M'``
    is a 2x2 max-pool. No dropout, as in Liu et al. 2021 (Supp. B.2).

    Args:
        arch (str | sequence): ``'vgg16'``, ``'vgg11'`` or a sequence of
            channel counts and ``'M'``.
        width (float): multiplier of every channel count. Defaults to 1.
        in_channels (int): image channels. Defaults to 3.
        conv_cfg (dict, optional): the convs' config (mmcv
            ``build_conv_layer``), e.g. ``dict(type='ConvWS')``.
    """

    def __init__(self,
                 arch: Union[str, Sequence] = 'vgg16',
                 width: float = 1.,
                 in_channels: int = 3,
                 conv_cfg: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in VGG_ARCHS:
                raise KeyError(f'VGGBN.arch: unknown {arch!r}; accepted: '
                               f'{sorted(VGG_ARCHS)} or a list of channel '
                               "counts and 'M'")
            arch = VGG_ARCHS[arch]
        layers = []
        for v in arch:
            if v == 'M':
                layers.append(nn.MaxPool2d(2, 2))
                continue
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"VGGBN.arch: entries are ints >= 1 or 'M', "
                                 f'got {v!r}')
            out = _scaled(v, width)
            layers += [
                *conv_bn(in_channels, out, 3, conv_cfg=conv_cfg),
                nn.ReLU(inplace=True)
            ]
            in_channels = out
        self.features = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, x):
        return self.features(x)


class BasicBlockBN(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut (identity, or a 1x1 conv
    followed by BN when the shape changes), then ReLU."""

    def __init__(self,
                 in_ch: int,
                 out_ch: int,
                 stride: int,
                 conv_cfg: Optional[dict] = None):
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride, conv_cfg)
        self.conv2 = conv_bn(out_ch, out_ch, 3, conv_cfg=conv_cfg)
        self.shortcut = conv_bn(in_ch, out_ch, 1, stride, conv_cfg) \
            if stride != 1 or in_ch != out_ch else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv2(self.relu(self.conv1(x)))
        return self.relu(out + self.shortcut(x))


@MODELS.register_module()
class ResNetBN(BaseModule):
    """CIFAR ResNet of basic blocks with BatchNorm after every conv: a 3x3
    stem conv, then stages of ``blocks[i]`` blocks of ``channels[i]``
    channels (stride 1 for the first stage, 2 after).

    ``'resnet18'``: stem 64, blocks (2, 2, 2, 2), channels (64, 128, 256, 512)
    (Liu et al. 2021's ResNet18 variant). ``'wrn28-10'``: WideResNet-28-10
    (Zagoruyko & Komodakis 2016) in the same post-activation form with BN
    after every conv: stem 16, blocks (4, 4, 4), channels (160, 320, 640).

    Args:
        arch (str | dict): a name above or ``dict(stem=, blocks=,
            channels=)``.
        width (float): multiplier of every channel count. Defaults to 1.
        conv_cfg (dict, optional): the convs' config (mmcv
            ``build_conv_layer``), e.g. ``dict(type='ConvWS')``.
    """
    ARCHS = {
        'resnet18':
        dict(stem=64, blocks=(2, 2, 2, 2), channels=(64, 128, 256, 512)),
        'wrn28-10':
        dict(stem=16, blocks=(4, 4, 4), channels=(160, 320, 640)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'resnet18',
                 width: float = 1.,
                 in_channels: int = 3,
                 conv_cfg: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in self.ARCHS:
                raise KeyError(f'ResNetBN.arch: unknown {arch!r}; accepted: '
                               f'{sorted(self.ARCHS)} or dict(stem=, blocks='
                               ', channels=)')
            arch = self.ARCHS[arch]
        if set(arch) != {'stem', 'blocks', 'channels'} or \
                len(arch['blocks']) != len(arch['channels']):
            raise ValueError('ResNetBN.arch: a dict needs exactly stem, '
                             'blocks and channels (one count per stage), '
                             f'got {arch!r}')
        ch = _scaled(arch['stem'], width)
        self.stem = nn.Sequential(
            *conv_bn(in_channels, ch, 3, conv_cfg=conv_cfg),
            nn.ReLU(inplace=True))
        stages = []
        for i, (n, c) in enumerate(zip(arch['blocks'], arch['channels'])):
            c = _scaled(c, width)
            blocks = []
            for j in range(n):
                blocks.append(
                    BasicBlockBN(ch, c, 2 if i > 0 and j == 0 else 1,
                                 conv_cfg))
                ch = c
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = ch

    def forward(self, x):
        return self.stages(self.stem(x))
