"""Detectron2's ``new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py`` as it is
(trained from scratch, SyncBN everywhere, ``NaiveSyncBatchNorm`` in the box
and mask heads, weight decay 4e-5): the weight-decay twin of
``mask_rcnn_R_50_FPN_syncbn_wrs-tau10_100ep_lsj.py``."""
from detectron2 import model_zoo

_base = model_zoo.get_config('new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py')
dataloader = _base.dataloader
lr_multiplier = _base.lr_multiplier
model = _base.model
optimizer = _base.optimizer
train = _base.train
