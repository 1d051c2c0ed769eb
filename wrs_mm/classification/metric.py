"""Top-k accuracy over images, DDP-correct (``BaseMetric`` gathers the
per-image results of all ranks before computing)."""
from typing import Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """``top{k} = 100 * mean_i [gt_i among the k highest scores of image
    i]``, in percent, keys ``accuracy/top1`` (and ``accuracy/top5`` ...).

    Args:
        topk (int | sequence[int]): the k's. Defaults to 1.
        tag (str, optional): count only the images whose data sample carries
            this ``tag`` (set by the dataset's ``tag``), so one validation
            pass over a concatenation of data sets reports each (e.g. a
            held-out validation split and the test set). Defaults to None
            (every image).
        prefix (str, optional): key prefix. Defaults to ``'accuracy'``.
    """
    default_prefix = 'accuracy'

    def __init__(self,
                 topk=1,
                 tag: Optional[str] = None,
                 prefix: Optional[str] = None,
                 collect_device: str = 'cpu'):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or not all(
                isinstance(k, int) and k >= 1 for k in self.topk):
            raise ValueError('Accuracy.topk must be an integer >= 1 or a '
                             f'sequence of them, got {topk!r}')
        self.tag = tag

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            if self.tag is not None and s.get('tag') != self.tag:
                continue
            score, gt = s['pred_score'], int(s['gt_label'])
            if max(self.topk) > len(score):
                raise ValueError(f'Accuracy.topk {self.topk} exceeds the '
                                 f'{len(score)} classes')
            # position of gt in the scores sorted high to low, ties in class
            # order (so top-1 agrees with pred_label = argmax)
            order = score.argsort(descending=True, stable=True)
            self.results.append(int((order == gt).nonzero()))

    def compute_metrics(self, results) -> dict:
        if not results:
            raise ValueError('Accuracy: no image to evaluate' + (
                f' with tag {self.tag!r}' if self.tag is not None else ''))
        return {
            f'top{k}': 100. * sum(r < k for r in results) / len(results)
            for k in self.topk
        }
