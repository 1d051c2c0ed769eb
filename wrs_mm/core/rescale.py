"""Weight rescaling (WRS): scale every scale-invariant weight vector to unit L2
norm.

Liu et al. 2021, "The Implicit Biases of Stochastic Gradient Descent on Deep
Neural Networks with Batch Normalization", Sec. 5: every tau optimizer steps,

    w_j <- w_j / ||w_j||_2

for each weight vector w_j the network output is invariant to (an output
channel for BatchNorm / weight standardisation, a group of channels for
GroupNorm, the whole tensor for LayerNorm). Norms are accumulated in fp32 for
fp16 / bf16 weights. Three implementations, chosen per (device, dtype) by
``backend``:

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
from .selfcheck import checked_kernel_call, warn_fallback

BACKENDS = ('auto', 'triton', 'torch', 'loop')
CHECKS = ('deferred', 'eager')


def check_choice(value, accepted: tuple, key: str) -> None:
    """Raise a ``ValueError`` naming ``key`` unless ``value`` is accepted."""
    if value not in accepted:
        raise ValueError(f'{key} must be one of {accepted}, got {value!r}')


def check_backend(backend: str, key: str) -> None:
    """:func:`check_choice` against :data:`BACKENDS`."""
    check_choice(backend, BACKENDS, key)


def choose_backend(backend: str, bucket: Bucket, owner: str) -> str:
    """The implementation for ``bucket`` (see the module doc)."""
    check_backend(backend, f'{owner}.backend')
    device = bucket.entries[0].param.device
    blocks = all(
        kernels.row_blocks_ok(e.param, e.rows) for e in bucket.entries)
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
    """1 / norm where the norm is finite and non-zero, else 1 (three small
    kernels: 1/0 = inf, 1/inf = 0 and NaN are all mapped to 1)."""
    r = norms.reciprocal().nan_to_num_(1., 1., 1.)
    return r.masked_fill_(r == 0, 1.)


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
            self._summary = torch.stack([(~finite).sum().float(),
                                         (n == 0).sum().float(),
                                         n.mean(),
                                         n.min(),
                                         n.max()]).tolist() + [n.numel()]
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

    def row_scales(self):
        """Per bucket, its entries and ``s_j``: the factor each row is
        divided by (its norm; 1 for rows left as they are), on the device,
        one broadcastable tensor per parameter."""
        for bucket, norms in zip(self._buckets, self._norms):
            yield bucket.entries, bucket.row_views(
                safe_reciprocal(norms).reciprocal_())

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
        self_check: check the Triton kernel against the torch reference the
            first time each bucket uses it, and fall back to ``'torch'`` for
            that bucket, with a warning, if it fails or disagrees
            (:mod:`.selfcheck`). Defaults to True.
    """

    def __init__(self,
                 entries: Sequence[RowEntry],
                 backend: str = 'auto',
                 check_finite: str = 'deferred',
                 self_check: bool = True):
        check_choice(check_finite, CHECKS, 'WeightRescaler.check_finite')
        self.pack = RowPack(entries)
        self.check_finite = check_finite
        self.backends = [
            choose_backend(backend, b, 'WeightRescaler')
            for b in self.pack.buckets
        ]
        self._tables = [
            kernels.RowTable(b.params, [e.rows for e in b.entries])
            if k == 'triton' else None
            for b, k in zip(self.pack.buckets, self.backends)
        ]
        self._unchecked = [k == 'triton' and self_check for k in self.backends]
        self._warned: set = set()  # (device, dtype) of failed self-checks

    def __len__(self) -> int:
        return len(self.pack)

    @torch.no_grad()
    def __call__(self) -> RescaleStats:
        eager = self.check_finite == 'eager'
        buckets = range(len(self.pack.buckets))
        norms = [self._bucket(i, apply=not eager) for i in buckets]
        stats = RescaleStats(norms, self.pack.buckets, modified=not eager)
        if eager:
            stats.norm_mean  # raises before any weight is modified
            for i, n in zip(buckets, norms):
                self._bucket(i, apply=True, norms=n)
        return stats

    def _bucket(self,
                i: int,
                apply: bool,
                norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`_run` on bucket ``i``, the first Triton use checked."""
        bucket, table = self.pack.buckets[i], self._tables[i]
        if self._unchecked[i]:
            self._unchecked[i] = False
            out, what, diff = checked_kernel_call(
                bucket.params, lambda: kernels.rescale_rows(table, apply),
                lambda: self._run(bucket, 'torch', None, apply))
            if what is None:
                return out
            p = bucket.params[0]
            warn_fallback('WeightRescaler', p.device, p.dtype, what, diff,
                          self._warned)
            self.backends[i], self._tables[i] = 'torch', None
        return self._run(bucket, self.backends[i], self._tables[i], apply,
                         norms)

    @staticmethod
    def _run(bucket: Bucket,
             backend: str,
             table,
             apply: bool,
             norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Row norms of ``bucket`` (given, or measured) and, if ``apply``,
        the rescale."""
        if backend == 'triton':
            return kernels.rescale_rows(table, apply)
        if backend == 'loop':  # norm then scale while the weight is hot
            given = [None] * len(bucket.entries) if norms is None else \
                norms.split([e.rows for e in bucket.entries])
            out = []
            for e, n in zip(bucket.entries, given):
                m = _rows_view(e.param, e.rows)
                copy = m is None
                if copy:
                    m = e.param.reshape(e.rows, -1)
                if n is None:
                    n = torch.linalg.vector_norm(m, dim=1, dtype=torch.float32)
                if apply:
                    m.mul_(safe_reciprocal(n)[:, None])
                    if copy:
                        e.param.copy_(m.view(e.param.shape))
                out.append(n)
            return torch.cat(out) if norms is None else norms
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


#: optimizer-state buffers that follow a rescale, with the power of the row
#: scale they are multiplied by (first moments 1, second moments 2)
STATE_POWERS = {
    'momentum_buffer': 1,  # SGD
    'exp_avg': 1,  # Adam, AdamW, ...
    'exp_avg_sq': 2,
    'max_exp_avg_sq': 2,  # amsgrad
}


@torch.no_grad()
def rescale_optimizer_state(optimizer: torch.optim.Optimizer,
                            stats: RescaleStats) -> None:
    """Carry a rescale over to the optimizer's per-parameter buffers.

    ``w_j <- w_j / s_j`` multiplies the gradient of a scale-invariant weight
    by ``s_j`` (``grad L(w / s) = s grad L(w)``). This multiplies SGD's
    ``momentum_buffer`` and Adam's ``exp_avg`` by ``s_j`` and ``exp_avg_sq``
    (``max_exp_avg_sq``) by ``s_j^2``, row by row, so that the buffers are
    what the optimizer would hold had it seen the rescaled weight's gradients
    all along. Effect on the next steps: SGD-momentum's momentum and new
    gradients are in the same units again; Adam's update ``m / sqrt(v)``
    keeps its absolute size (it is scale-free), i.e. its size relative to
    the now unit-norm weight grows by ``s_j``. Without it (the paper's
    choice), the old buffers mix with gradients ``s_j`` times larger until
    they decay.

    Raises ``ValueError`` naming the buffer, before changing any, when the
    optimizer keeps a per-weight buffer of unknown meaning
    (:data:`STATE_POWERS` lists the known ones).
    """
    work: List[tuple] = []
    for entries, scales in stats.row_scales():
        for e, scale in zip(entries, scales):
            for key, buf in optimizer.state.get(e.param, {}).items():
                if not torch.is_tensor(buf) or buf.shape != e.param.shape:
                    continue  # 'step' and other scalars
                power = STATE_POWERS.get(key)
                if power is None:
                    raise ValueError(
                        f'rescale_optimizer_state: {type(optimizer).__name__} '
                        f'keeps {key!r} for {e.name!r}, of unknown scaling; '
                        f'known buffers: {sorted(STATE_POWERS)}')
                work.append((buf, scale if power == 1 else scale * scale))
    if work:
        bufs, factors = zip(*work)
        torch._foreach_mul_(
            list(bufs), [f.to(b.dtype) for b, f in zip(bufs, factors)])
