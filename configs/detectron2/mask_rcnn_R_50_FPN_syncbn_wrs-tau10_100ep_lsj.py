"""WRS every 10 optimizer steps (unit norm) on the weight-decay twin: the
convs followed by a trained BatchNorm (69 of the 78 weights of 2 or more
dims) are rescaled and lose their decay. Train it with
``tools/detectron2/lazyconfig_train_net.py`` (it registers ``train.hooks``)."""
from detectron2.config import LazyCall as L

from wrs_mm.detectron2 import WeightRescaleHook, get_wrs_optimizer_params
from .mask_rcnn_R_50_FPN_syncbn_wd_100ep_lsj import (dataloader, lr_multiplier,
                                                     model, optimizer, train)

optimizer.params._target_ = get_wrs_optimizer_params
train.hooks = [L(WeightRescaleHook)(interval=10, target_norm=1.0)]

__all__ = ['dataloader', 'lr_multiplier', 'model', 'optimizer', 'train']
