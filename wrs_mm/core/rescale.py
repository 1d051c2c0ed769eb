"""Weight rescaling (WRS): scale every scale-invariant weight vector to unit L2 norm.

Liu et al., "The Implicit Biases of Stochastic Gradient Descent on Deep Neural
Networks with Batch Normalization", Sec. 5: every tau optimizer steps,

    w_j <- w_j / ||w_j||_2

for each weight vector w_j the network output is invariant to (an output channel
for BatchNorm / weight standardisation, a group of channels for GroupNorm, the
whole tensor for LayerNorm). The operation is batched: all weights of one device
and dtype are packed into a flat buffer, one norm kernel runs per distinct row
length, and the weights are scaled in place by one broadcasting foreach multiply.
"""
from dataclasses import dataclass
from typing import Sequence

import torch

from .rows import RowEntry, RowPack


@dataclass
class RescaleStats:
    """Row norms measured *before* a rescale, and rows left untouched."""
    norm_mean: float
    norm_min: float
    norm_max: float
    zero_rows: int
    rows: int


class WeightRescaler:
    """Rescales a fixed set of weights to unit norm per row, in place.

    Args:
        entries: the weights, each with the number of rows (independent weight
            vectors) it is split into; see :class:`RowEntry`.

    Rows with zero norm are left as they are and counted; a non-finite norm raises
    ``FloatingPointError`` naming the parameter, before any weight is modified.
    fp16 / bf16 weights are normalised with fp32 norms.
    """

    def __init__(self, entries: Sequence[RowEntry]):
        self.pack = RowPack(entries)

    def __len__(self) -> int:
        return len(self.pack)

    @torch.no_grad()
    def __call__(self) -> RescaleStats:
        work = []
        for bucket in self.pack.buckets:
            norms = torch.cat([
                torch.linalg.vector_norm(m, dim=1, dtype=torch.float32)
                for m in bucket.matrices(bucket.gather())
            ])
            work.append((bucket, norms))
        device = work[0][1].device
        all_norms = torch.cat([n.to(device) for _, n in work])
        finite = torch.isfinite(all_norms)
        summary = torch.stack([
            finite.all().float(), (all_norms == 0).sum().float(),
            all_norms.mean(), all_norms.min(), all_norms.max()
        ]).tolist()  # the only host sync
        if not summary[0]:
            self._raise_non_finite(work)
        for bucket, norms in work:
            scale = torch.where(norms > 0, norms.reciprocal(),
                                torch.ones_like(norms))
            # one foreach kernel; low-precision weights are multiplied in fp32
            torch._foreach_mul_(bucket.params, bucket.row_views(scale))
        return RescaleStats(norm_mean=summary[2], norm_min=summary[3],
                            norm_max=summary[4], zero_rows=int(summary[1]),
                            rows=all_norms.numel())

    @staticmethod
    def _raise_non_finite(work) -> None:
        for bucket, norms in work:
            bad = (~torch.isfinite(norms)).nonzero()
            if len(bad):
                name = bucket.owner_of_row(int(bad[0])).name
                raise FloatingPointError(
                    f'WRS: weight {name!r} has a non-finite norm (NaN/Inf); '
                    'nothing was rescaled. Check the loss and learning rate.')
