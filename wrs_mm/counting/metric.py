"""Counting metric: MAE and MSE over images.

As counting papers report them: ``MAE = mean_i |C_i - C_i^gt|`` and
``MSE = sqrt(mean_i (C_i - C_i^gt)^2)`` (a root mean squared error), with
``C_i`` the predicted count (density sum) and ``C_i^gt`` the number of
annotated heads of whole image i. ``BaseMetric`` gathers the per-image results
of all ranks before computing, so the numbers are DDP-correct.
"""
import math

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class CountingMetric(BaseMetric):
    """Keys ``mae`` and ``mse`` (select the best checkpoint with
    ``CheckpointHook(save_best='mae', rule='less')``)."""
    default_prefix = None

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append((float(s['pred_count']), float(s['gt_count'])))

    def compute_metrics(self, results) -> dict:
        err = [p - g for p, g in results]
        return dict(
            mae=sum(map(abs, err)) / len(err),
            mse=math.sqrt(sum(e * e for e in err) / len(err)))
