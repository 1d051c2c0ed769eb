"""Weight rescaling (WRS): scale every scale-invariant weight vector to a fixed
L2 norm (unit norm in the paper).

Liu et al. 2021, "The Implicit Biases of Stochastic Gradient Descent on Deep
Neural Networks with Batch Normalization", Sec. 5: every tau optimizer steps,

    w_j <- r * w_j / ||w_j||_2        (the paper: r = 1)

for each weight vector w_j the network output is invariant to (an output
channel for BatchNorm / weight standardisation, a group of channels for
GroupNorm, the whole tensor for LayerNorm). The target norm r sets the
effective learning rate the rescale returns to (``lr / r^2`` for SGD,
``lr / r`` for Adam's angular step): ``target_norm='init'`` keeps each
weight's initial scale, ``r = sqrt(mean_j ||w_j(0)||^2)``, so that WRS does
not lower the effective lr of a network whose default initialisation gives
rows of norm well below 1. Norms are accumulated in fp32 for
fp16 / bf16 weights. Three implementations, chosen per (device, dtype) by
``backend`` (:mod:`.backend`): the fused Triton kernel (one launch for all
weights, :mod:`.kernels`), the packed pure-torch reference (one norm kernel
per distinct row length, one broadcasting ``_foreach_mul_``) and a loop of one
norm and one in-place multiply per parameter (CPU).

No implementation synchronises with the host: the norms stay on the device in
the returned :class:`RescaleStats`, read (one synchronisation) only when asked
for. Rows of zero or non-finite norm are left as they are; a non-finite norm
raises ``FloatingPointError`` naming the parameter when the statistics are
read, or, with ``check_finite='eager'``, before any weight is modified.
"""
from typing import List, Optional, Sequence

import torch

from . import kernels
from .backend import BucketBackend, check_choice, choose_backend
from .rows import Bucket, RowEntry, RowPack

CHECKS = ('deferred', 'eager')


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


def rescale_factors(norms: torch.Tensor,
                    targets: Optional[torch.Tensor] = None) -> torch.Tensor:
    """What each row is multiplied by: ``target / norm`` (``1 / norm`` when
    ``targets`` is None), and 1 for rows of zero or non-finite norm."""
    if targets is None:
        return safe_reciprocal(norms)
    ok = torch.isfinite(norms) & (norms > 0)
    return torch.where(ok, targets / norms, torch.ones_like(norms))


def check_target_norm(value, key: str, per_weight: bool = True) -> None:
    """Raise a ``ValueError`` naming ``key`` unless ``value`` is a finite
    number > 0, ``'init'``, or (``per_weight``) a dict of such numbers per
    weight name."""
    is_dict = isinstance(value, dict) and per_weight
    values = list(value.values()) if is_dict else [value]
    if (value == 'init' and not is_dict) or (values and all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            and 0 < v < float('inf') for v in values)):
        return
    raise ValueError(
        f"{key} must be a finite number > 0 or 'init' (each "
        "weight's initial RMS row norm)" +
        (', or a dict of numbers > 0 per weight name' if per_weight else '') +
        f', got {value!r}')


def initial_row_rms(entry: RowEntry) -> float:
    """``sqrt(mean_j ||w_j||^2)`` over the entry's rows (fp32)."""
    sq = entry.param.detach().float().square().sum()
    return float((sq / entry.rows).sqrt())


class RescaleStats:
    """Row norms measured *before* a rescale, kept on the device.

    Reading any attribute synchronises once (the values are then cached) and
    raises ``FloatingPointError`` naming the first weight with a non-finite
    norm. Attributes: ``norm_mean``, ``norm_min``, ``norm_max``,
    ``zero_rows`` (left as they are), ``rows``.
    """

    def __init__(self,
                 norms: List[torch.Tensor],
                 buckets: List[Bucket],
                 modified: bool,
                 targets: Optional[List[Optional[torch.Tensor]]] = None):
        self._norms, self._buckets, self._modified = norms, buckets, modified
        self._targets = targets or [None] * len(buckets)
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
        divided by (``norm / target``; 1 for rows left as they are), on the
        device, one broadcastable tensor per parameter."""
        for bucket, norms, t in zip(self._buckets, self._norms, self._targets):
            yield bucket.entries, bucket.row_views(
                rescale_factors(norms, t).reciprocal_())

    norm_mean = property(lambda self: self._read()[2])
    norm_min = property(lambda self: self._read()[3])
    norm_max = property(lambda self: self._read()[4])
    zero_rows = property(lambda self: int(self._read()[1]))
    rows = property(lambda self: self._read()[5])


class WeightRescaler:
    """Rescales a fixed set of weights to a target norm per row, in place.

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
        target_norm (float | str | dict): the norm every row is set to: a
            number (1.0, the paper's unit norm, by default), ``'init'`` (per
            weight, the RMS of its row norms now, i.e. construct the rescaler
            before the first optimizer step) or ``{weight name: norm}`` (as
            :attr:`targets` holds them, e.g. restored from a checkpoint).

    Attributes:
        targets (dict): the target norm of every weight, by name.
    """

    def __init__(self,
                 entries: Sequence[RowEntry],
                 backend: str = 'auto',
                 check_finite: str = 'deferred',
                 self_check: bool = True,
                 target_norm=1.0):
        check_choice(check_finite, CHECKS, 'WeightRescaler.check_finite')
        check_target_norm(target_norm, 'WeightRescaler.target_norm')
        self.pack = RowPack(entries)
        self.targets = self._resolve_targets(target_norm)
        self.check_finite = check_finite
        #: per bucket: its backend, and the targets per parameter (the
        #: kernel) and per row (the torch paths)
        self.bucket_backends = [
            BucketBackend(b, choose_backend(backend, b, 'WeightRescaler'),
                          [self.targets[e.name]
                           for e in b.entries], self_check)
            for b in self.pack.buckets
        ]
        self._warned: set = set()  # (device, dtype) of failed self-checks

    @property
    def backends(self) -> List[str]:
        """The backend of each bucket (``'torch'`` after a failed check)."""
        return [b.backend for b in self.bucket_backends]

    @staticmethod
    def _row_targets(b: BucketBackend) -> Optional[torch.Tensor]:
        """Per row; None for unit targets (the paper's, the fast path)."""
        return None if all(t == 1. for t in b.values) else b.per_row()

    def _resolve_targets(self, target_norm) -> dict:
        names = [e.name for e in self.pack.entries]
        if isinstance(target_norm, dict):
            missing = sorted(set(names) - set(target_norm))
            if missing:
                raise ValueError(
                    'WeightRescaler.target_norm: no target norm for '
                    f'{missing}; the dict has {sorted(target_norm)}')
            return {n: float(target_norm[n]) for n in names}
        if target_norm == 'init':
            return {e.name: initial_row_rms(e) for e in self.pack.entries}
        return {n: float(target_norm) for n in names}

    def __len__(self) -> int:
        return len(self.pack)

    @torch.no_grad()
    def __call__(self) -> RescaleStats:
        eager = self.check_finite == 'eager'
        norms = [
            self._bucket(b, apply=not eager) for b in self.bucket_backends
        ]
        stats = RescaleStats(
            norms,
            self.pack.buckets,
            not eager,
            targets=[self._row_targets(b) for b in self.bucket_backends])
        if eager:
            stats.norm_mean  # raises before any weight is modified
            for b, n in zip(self.bucket_backends, norms):
                self._bucket(b, apply=True, norms=n)
        return stats

    def _bucket(self,
                b: BucketBackend,
                apply: bool,
                norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`_run` on one bucket, the first Triton use checked."""
        per_row = self._row_targets(b)
        if b.unchecked:
            done, out = b.first_use(
                'WeightRescaler', self._warned, b.bucket.params,
                lambda: kernels.rescale_rows(b.table, b.per_param(), apply),
                lambda: self._run(b.bucket, 'torch', None,
                                  (None, per_row), apply))
            if done:
                return out
        per_param = b.per_param() if b.backend == 'triton' else None
        return self._run(b.bucket, b.backend, b.table, (per_param, per_row),
                         apply, norms)

    @staticmethod
    def _run(bucket: Bucket,
             backend: str,
             table,
             targets: tuple,
             apply: bool,
             norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Row norms of ``bucket`` (given, or measured) and, if ``apply``,
        the rescale to ``targets`` (per parameter, per row or None)."""
        per_param, per_row = targets
        if backend == 'triton':
            return kernels.rescale_rows(table, per_param, apply)
        if backend == 'loop':  # norm then scale while the weight is hot
            split = [e.rows for e in bucket.entries]
            given = [None] * len(bucket.entries) if norms is None else \
                norms.split(split)
            goals = [None] * len(bucket.entries) if per_row is None else \
                per_row.split(split)
            out = []
            for e, n, t in zip(bucket.entries, given, goals):
                m = _rows_view(e.param, e.rows)
                copy = m is None
                if copy:
                    m = e.param.reshape(e.rows, -1)
                if n is None:
                    n = torch.linalg.vector_norm(m, dim=1, dtype=torch.float32)
                if apply:
                    m.mul_(rescale_factors(n, t)[:, None])
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
            torch._foreach_mul_(
                bucket.params,
                bucket.row_views(rescale_factors(norms, per_row)))
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

    ``w_j <- w_j / s_j`` (``s_j = ||w_j|| / target``) multiplies the
    gradient of a scale-invariant weight by ``s_j`` (``grad L(w / s) = s
    grad L(w)``). This multiplies SGD's
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
