"""Crowd counting in OpenMMLab (registered in mmengine's root registries):
CSRNet with BatchNorm, the Bayesian loss, ShanghaiTech / UCF-QNRF data sets,
their pipeline and the MAE / MSE metric."""
from .bayesian_loss import BayesianLoss, bayesian_loss, posterior
from .csrnet import CSRNet
from .datasets import ShanghaiTechDataset, UCFQNRFDataset
from .metric import CountingMetric
from .transforms import (LoadCrowdImage, PackCrowdInputs, RandomCropCrowd,
                         RandomFlipCrowd, ResizeCrowd)

__all__ = [
    'BayesianLoss', 'bayesian_loss', 'posterior', 'CSRNet',
    'ShanghaiTechDataset', 'UCFQNRFDataset', 'CountingMetric',
    'LoadCrowdImage', 'PackCrowdInputs', 'RandomCropCrowd', 'RandomFlipCrowd',
    'ResizeCrowd'
]
