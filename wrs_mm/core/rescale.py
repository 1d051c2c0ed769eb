"""Weight rescaling (WRS): scale every scale-invariant weight vector to unit L2 norm.

Liu et al., "The Implicit Biases of Stochastic Gradient Descent on Deep Neural
Networks with Batch Normalization", Sec. 5: every tau optimizer steps,

    w_j <- w_j / ||w_j||_2

for each weight vector w_j the network output is invariant to (an output channel
for BatchNorm / weight standardisation, a group of channels for GroupNorm, the
whole tensor for LayerNorm). Norms are accumulated in fp32 for fp16 / bf16
weights. Three implementations, chosen per (device, dtype) by ``backend``:

* ``'triton'``: one fused kernel launch for all weights (:mod:`.kernels`);
  the default on CUDA when Triton is installed;
* ``'torch'``: the pure-torch reference: a packed copy, one norm kernel per
  distinct row length, one broadcasting ``_foreach_mul_``; the default on CUDA
  without Triton;
* ``'loop'``: one norm and one in-place multiply per parameter; the default on
  CPU, where kernel launches are cheap and the packed copy is not.

No implementation synchronises with the host: the norms stay on the device in
the returned :class:`RescaleStats`, read (one synchronisation) only when asked
for. Rows of zero or non-finite norm are left as they are; a non-finite norm
raises ``FloatingPointError`` naming the parameter when the statistics are
read, or, with ``check_finite='eager'``, before any weight is modified.
"""
from typing import List, Optional, Sequence

import torch

from . import kernels
from .rows import Bucket, RowEntry, RowPack

BACKENDS = ('auto', 'triton', 'torch', 'loop')
CHECKS = ('deferred', 'eager')


def choose_backend(backend: str, bucket: Bucket, owner: str) -> str:
    """The implementation for ``bucket`` (see the module doc)."""
    if backend not in BACKENDS:
        raise ValueError(f'{owner}: backend must be one of {BACKENDS}, got '
                         f'{backend!r}')
    device = bucket.entries[0].param.device
    blocks = all(kernels.row_blocks_ok(e.param, e.rows)
                 for e in bucket.entries)
    if backend == 'triton':
        if not kernels.available(device):
            raise ValueError(f'{owner}: backend="triton" needs Triton and a '
                             f'CUDA device (or TRITON_INTERPRET=1); got '
                             f'{device} with Triton '
                             f"{'installed' if kernels.triton else 'missing'}")
        if not blocks:
            raise ValueError(f'{owner}: backend="triton" needs weights whose '
                             'rows are contiguous blocks (contiguous or '
                             'channels_last); use "torch" or "loop"')
        return backend
    if backend == 'auto':
        if kernels.available(device) and device.type == 'cuda' and blocks:
            return 'triton'
        return 'loop' if device.type == 'cpu' else 'torch'
    return backend


def _rows_view(p: torch.Tensor, rows: int) -> Optional[torch.Tensor]:
    """``p`` as an in-place ``(rows, L)`` matrix (element order inside a row
    may differ from ``reshape``'s for channels_last; norms do not care)."""
    if p.is_contiguous():
        return p.view(rows, -1)
    if kernels.row_blocks_ok(p, rows):
        n = p.numel() // rows
        return p.as_strided((rows, n), (n, 1))
    return None


def safe_reciprocal(norms: torch.Tensor) -> torch.Tensor:
    """1 / norm where the norm is finite and non-zero, else 1."""
    ok = (norms > 0) & torch.isfinite(norms)
    return torch.where(ok, norms.reciprocal(), torch.ones_like(norms))


class RescaleStats:
    """Row norms measured *before* a rescale, kept on the device.

    Reading any attribute synchronises once (the values are then cached) and
    raises ``FloatingPointError`` naming the first weight with a non-finite
    norm. Attributes: ``norm_mean``, ``norm_min``, ``norm_max``,
    ``zero_rows`` (left as they are), ``rows``.
    """

    def __init__(self, norms: List[torch.Tensor], buckets: List[Bucket],
                 modified: bool):
        self._norms, self._buckets, self._modified = norms, buckets, modified
        self._summary = None

    def _read(self) -> list:
        if self._summary is None:
            device = self._norms[0].device
            n = torch.cat([x.to(device) for x in self._norms])
            finite = torch.isfinite(n)
            self._summary = torch.stack([
                (~finite).sum().float(), (n == 0).sum().float(), n.mean(),
                n.min(), n.max()
            ]).tolist() + [n.numel()]
        if self._summary[0]:
            self._raise_non_finite()
        return self._summary

    def _raise_non_finite(self) -> None:
        for bucket, norms in zip(self._buckets, self._norms):
            bad = (~torch.isfinite(norms)).nonzero()
            if len(bad):
                name = bucket.owner_of_row(int(bad[0])).name
                done = ('its non-finite rows were left as they are'
                        if self._modified else 'nothing was rescaled')
                raise FloatingPointError(
                    f'WRS: weight {name!r} has a non-finite norm (NaN/Inf); '
                    f'{done}. Check the loss and learning rate.')

    norm_mean = property(lambda self: self._read()[2])
    norm_min = property(lambda self: self._read()[3])
    norm_max = property(lambda self: self._read()[4])
    zero_rows = property(lambda self: int(self._read()[1]))
    rows = property(lambda self: self._read()[5])


class WeightRescaler:
    """Rescales a fixed set of weights to unit norm per row, in place.

    Args:
        entries: the weights, each with the number of rows (independent weight
            vectors) it is split into; see :class:`RowEntry`.
        backend: ``'auto'``, ``'triton'``, ``'torch'`` or ``'loop'`` (module
            doc).
        check_finite: ``'deferred'`` (default: no host synchronisation; a
            non-finite norm raises when the stats are read) or ``'eager'``
            (synchronise every call and raise before modifying any weight).
    """

    def __init__(self, entries: Sequence[RowEntry], backend: str = 'auto',
                 check_finite: str = 'deferred'):
        if check_finite not in CHECKS:
            raise ValueError(f'WeightRescaler: check_finite must be one of '
                             f'{CHECKS}, got {check_finite!r}')
        self.pack = RowPack(entries)
        self.check_finite = check_finite
        self.backends = [choose_backend(backend, b, 'WeightRescaler')
                         for b in self.pack.buckets]
        self._tables = [
            kernels.RowTable(b.params, [e.rows for e in b.entries])
            if k == 'triton' else None
            for b, k in zip(self.pack.buckets, self.backends)
        ]

    def __len__(self) -> int:
        return len(self.pack)

    @torch.no_grad()
    def __call__(self) -> RescaleStats:
        eager = self.check_finite == 'eager'
        work = list(zip(self.pack.buckets, self.backends, self._tables))
        norms = [self._run(b, k, t, apply=not eager) for b, k, t in work]
        stats = RescaleStats(norms, self.pack.buckets, modified=not eager)
        if eager:
            stats.norm_mean  # raises before any weight is modified
            for (b, k, t), n in zip(work, norms):
                self._run(b, k, t, apply=True, norms=n)
        return stats

    @staticmethod
    def _run(bucket: Bucket, backend: str, table, apply: bool,
             norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Row norms of ``bucket`` (given, or measured) and, if ``apply``,
        the rescale."""
        if backend == 'triton':
            return kernels.rescale_rows(table, apply)
        if backend == 'loop':
            mats = [_rows_view(e.param, e.rows) for e in bucket.entries]
            mats = [e.param.reshape(e.rows, -1) if m is None else m
                    for m, e in zip(mats, bucket.entries)]
            if norms is None:
                norms = torch.cat([
                    torch.linalg.vector_norm(m, dim=1, dtype=torch.float32)
                    for m in mats])
            if apply:
                scales = safe_reciprocal(norms).split(
                    [e.rows for e in bucket.entries])
                for m, s, e in zip(mats, scales, bucket.entries):
                    m.mul_(s[:, None])
                    if m.data_ptr() != e.param.data_ptr():  # a copy
                        e.param.copy_(m.view(e.param.shape))
            return norms
        if norms is None:
            norms = torch.cat([
                torch.linalg.vector_norm(m, dim=1, dtype=torch.float32)
                for m in bucket.matrices(bucket.gather())
            ])
        if apply:
            # one foreach kernel; low-precision weights are multiplied in fp32
            torch._foreach_mul_(bucket.params,
                                bucket.row_views(safe_reciprocal(norms)))
        return norms
