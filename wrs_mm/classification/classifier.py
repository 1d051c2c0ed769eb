"""An image classifier as an mmengine model: a backbone, global average
pooling, one linear layer, cross-entropy."""
from typing import Optional

import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn
from torch.nn import functional as F


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """``logits = fc(mean_{h,w} backbone(x))``, trained with cross-entropy.

    Data samples carry ``gt_label`` (a 0-dim long tensor,
    :class:`~wrs_mm.classification.transforms.PackClsInputs`); ``predict``
    adds ``pred_score`` (softmax over classes) and ``pred_label``.

    Args:
        backbone (dict): built from ``MODELS``; must expose ``out_channels``
            (:class:`~wrs_mm.classification.backbones.VGGBN`,
            :class:`~wrs_mm.classification.backbones.ResNetBN`).
        num_classes (int): output classes.
    """

    def __init__(self,
                 backbone: dict,
                 num_classes: int,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError('ImageClassifier.num_classes must be an integer '
                             f'>= 2, got {num_classes!r}')
        self.backbone = MODELS.build(backbone)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean((2, 3)))

    def forward(self,
                inputs: torch.Tensor,
                data_samples=None,
                mode: str = 'tensor'):
        logits = self.logits(inputs)
        if mode == 'loss':
            labels = torch.stack([s.gt_label
                                  for s in data_samples]).to(logits.device)
            return dict(loss_cls=F.cross_entropy(logits, labels))
        if mode == 'predict':
            scores = logits.detach().softmax(1)
            for s, score in zip(data_samples, scores):
                s.pred_score = score
                s.pred_label = score.argmax()
            return data_samples
        return logits
