"""Image classification in OpenMMLab (registered in mmengine's root
registries; mmpretrain needs torchvision): the CIFAR backbones of Liu et al.
2021 Table 1 with BatchNorm after every conv, a linear classifier, class-folder
and CIFAR-binary data sets, the paper's augmentation and top-k accuracy."""
from .backbones import VGGBN, ResNetBN
from .classifier import ImageClassifier
from .datasets import CIFARDataset, ImageFolderDataset
from .metric import Accuracy
from .transforms import (LoadClsImage, PackClsInputs, RandomColorJitter,
                         RandomPadCrop)

__all__ = [
    'ResNetBN', 'VGGBN', 'ImageClassifier', 'CIFARDataset',
    'ImageFolderDataset', 'Accuracy', 'LoadClsImage', 'PackClsInputs',
    'RandomColorJitter', 'RandomPadCrop'
]
