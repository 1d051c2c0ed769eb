"""The eps-shifted Lp regularizer for scale-invariant / weight-standardised
weights.

Li, Chen, Yang, "Understanding the Disharmony between Weight Normalization
Family and Weight Decay: eps-shifted L2 Regularizer", Sec. 5. Per output
channel j::

    R(w_j) = lambda/2 * (||w_j||_p - eps)^2,
    dR/dw_j = lambda * (||w_j||_p - eps) * sign(w_j) |w_j|^(p-1)
              / ||w_j||_p^(p-1)

(for p = 2: ``lambda * (1 - eps/||w_j||) * w_j``). Its minimum is at
``||w_j||_p = eps``, so unlike ``lambda/2 ||w||^2`` it never drives a weight to
0.

Weight-standardised convolutions (mmcv ``ConvWS2d``) ignore both the scale and
the mean of ``w_j``; following the authors' code (implus/PytorchInsight
``LSGD``), with ``n = len(w_j)``, ``mu = mean(w_j)``, ``c = w_j - mu`` and
``s = ||c||_p / (n-1)^(1/p)`` (the unbiased std for p = 2, as ``ConvWS2d``
uses)::

    R_ws(w_j) = lambda/2 * [(n-1) (s - eps)^2 + n mu^2],
    dR_ws/dw_j = lambda * [(n-1)^(1-1/p) (s - eps) P(g) + mu],

where ``g = sign(c)|c|^(p-1)/||c||_p^(p-1)`` and ``P`` removes the mean; for
p = 2 this is ``lambda * [(1 - eps/s) c + mu]``. Rows of zero norm get zero
shift term.

The step never synchronises with the host. Implementations, chosen per
(device, dtype) by ``backend`` (:mod:`.backend`): ``'triton'`` (one fused
launch for all weights, p = 2 only), ``'torch'`` (the packed pure-torch
reference) and ``'loop'`` (per parameter).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from . import kernels
from .backend import BucketBackend, check_backend, choose_backend
from .rows import RowEntry, RowPack

MODES = ('coupled', 'decoupled')


def check_options(eps: float,
                  p: float,
                  mode: str = 'coupled',
                  backend: str = 'auto',
                  owner: str = 'ShiftedLpRegularizer') -> None:
    """Raise a ``ValueError`` naming ``owner.<option>`` for a bad option."""
    if not eps >= 0:
        raise ValueError(f'{owner}.eps must be >= 0, got {eps}')
    if not p >= 1:
        raise ValueError(f'{owner}.p must be >= 1, got {p}')
    if mode not in MODES:
        raise ValueError(f'{owner}.mode must be one of {MODES}, got {mode!r}')
    check_backend(backend, f'{owner}.backend')
    if backend == 'triton' and p != 2:
        raise ValueError(f'{owner}.backend="triton" supports p = 2 only, got '
                         f'p = {p}')


def _dnorm(x: torch.Tensor, norm: torch.Tensor, p: float) -> torch.Tensor:
    """d||x||_p / dx row-wise (0 on zero rows)."""
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))[:, None]
    if p == 2:
        return x / safe
    if p == 1:
        return torch.sign(x)
    return torch.sign(x) * (x.abs() / safe)**(p - 1)


def shifted_lp_value(w: torch.Tensor,
                     eps: float,
                     p: float = 2.,
                     standardized: bool = False) -> torch.Tensor:
    """Per-row penalty ``R / lambda`` for ``w``, an ``(R, L)`` matrix of
    weight vectors."""
    check_options(eps, p)
    x = w.float()
    if not standardized:
        return 0.5 * (torch.linalg.vector_norm(x, ord=p, dim=1) - eps)**2
    n = x.shape[1]
    mu = x.mean(1)
    s = torch.linalg.vector_norm(
        x - mu[:, None], ord=p, dim=1) / (n - 1)**(1 / p)
    return 0.5 * ((n - 1) * (s - eps)**2 + n * mu**2)


def shifted_lp_grad(w: torch.Tensor,
                    eps: float,
                    p: float = 2.,
                    standardized: bool = False) -> torch.Tensor:
    """Gradient of :func:`shifted_lp_value` (fp32), row-wise, without
    autograd."""
    check_options(eps, p)
    x = w.float()
    if not standardized:
        norm = torch.linalg.vector_norm(x, ord=p, dim=1)
        coef = torch.where(norm > 0, norm - eps, torch.zeros_like(norm))
        return coef[:, None] * _dnorm(x, norm, p)
    n = x.shape[1]
    mu = x.mean(1, keepdim=True)
    c = x - mu
    cnorm = torch.linalg.vector_norm(c, ord=p, dim=1)
    s = cnorm / (n - 1)**(1 / p)
    g = _dnorm(c, cnorm, p)
    g = g - g.mean(1, keepdim=True)
    coef = torch.where(cnorm > 0, (n - 1)**(1 - 1 / p) * (s - eps),
                       torch.zeros_like(s))
    return coef[:, None] * g + mu


def _affine_p2(w: torch.Tensor, coef: torch.Tensor, eps: float,
               standardized: bool):
    """For p = 2, ``coef * dR/dw_j = a_j * w_j + b_j`` per row:
    ``a = coef (1 - eps/||w||)``, ``b = 0`` (plain) or ``a = coef (1 -
    eps/s)``, ``b = coef eps mu / s`` (weight-standardised, s = unbiased
    std). Zero rows get ``a = 0`` (and ``b = coef mu``)."""
    x = w.float()
    zero = torch.zeros_like(coef)
    if not standardized:
        n = torch.linalg.vector_norm(x, dim=1)
        return torch.where(n > 0, coef * (1 - eps / n), zero), None
    s, mu = torch.std_mean(x, dim=1)
    return (torch.where(s > 0, coef * (1 - eps / s), zero),
            torch.where(s > 0, coef * eps * mu / s, coef * mu))


@dataclass
class ShiftedLpEntry:
    """A weight to regularize, per output channel, with its coefficient
    lambda."""
    name: str
    param: torch.Tensor
    weight_decay: float
    standardized: bool = False


class ShiftedLpRegularizer:
    """Applies the eps-shifted Lp regularizer to a set of weights, batched.

    Args:
        entries: the weights and their lambda.
        eps: the shift (>= 0); the penalty's minimum is at ``||w_j||_p = eps``
            (or ``std(w_j) = eps`` for weight-standardised weights).
        p: the norm order (>= 1); 2 is the paper's.
        mode: ``'coupled'`` adds ``dR/dw`` to ``.grad`` before the optimizer
            step (L2-style, as the paper does with SGD); ``'decoupled'``
            shrinks the weights by ``lr * dR/dw`` before the step
            (AdamW-style).
        backend: ``'auto'``, ``'triton'`` (p = 2), ``'torch'`` or ``'loop'``
            (module doc).
        self_check: check the Triton kernel against the torch reference on
            each bucket's first step and fall back to ``'torch'`` for it, with
            a warning, if it fails or disagrees (:mod:`.selfcheck`). Defaults
            to True.

    Call :meth:`step_` right before the optimizer step (after unscaling AMP
    gradients), once per real optimizer update.
    """

    def __init__(self,
                 entries: Sequence[ShiftedLpEntry],
                 eps: float,
                 p: float = 2.,
                 mode: str = 'coupled',
                 backend: str = 'auto',
                 self_check: bool = True):
        check_options(eps, p, mode, backend)
        self.eps, self.p, self.mode = eps, p, mode
        self.pack = RowPack([
            RowEntry(e.name, e.param, e.param.shape[0], tag=e.standardized)
            for e in entries
        ])
        lam = {e.name: e.weight_decay for e in entries}
        #: per bucket: its backend and coefficients, lambda (coupled) or
        #: lr * lambda (decoupled), per parameter
        self.bucket_backends = []
        for b in self.pack.buckets:
            k = choose_backend(backend, b, 'shifted regularizer')
            if k == 'triton' and p != 2:  # 'auto' on CUDA with p != 2
                k = 'torch'
            self.bucket_backends.append(
                BucketBackend(b, k, [lam[e.name] for e in b.entries],
                              self_check))
        self._lams = [list(b.values) for b in self.bucket_backends]
        self._lrs = None  # the lrs the coefficients are made of (decoupled)
        self._warned: set = set()  # (device, dtype) of failed self-checks

    def __len__(self) -> int:
        return len(self.pack)

    @property
    def names(self):
        return [e.name for e in self.pack.entries]

    @property
    def backends(self) -> List[str]:
        """The backend of each bucket (``'torch'`` after a failed check)."""
        return [b.backend for b in self.bucket_backends]

    def _set_learning_rates(self, lrs: Optional[Sequence[float]]) -> None:
        """Decoupled: coefficients ``lr * lambda``, re-uploaded when an lr
        changed."""
        if self.mode == 'coupled':
            return
        if lrs is None or len(lrs) != len(self):
            raise ValueError('decoupled shifted regularizer needs one lr per '
                             f'weight ({len(self)}), got {lrs!r}')
        lrs = list(lrs)
        if lrs == self._lrs:
            return
        first = 0
        for b, lams in zip(self.bucket_backends, self._lams):
            n = len(lams)
            b.set_values(
                [lr * lam for lr, lam in zip(lrs[first:first + n], lams)])
            first += n
        self._lrs = lrs

    @torch.no_grad()
    def step_(self, lrs: Optional[Sequence[float]] = None) -> None:
        """Apply one step. ``lrs``: the lr of each weight, in :attr:`names`
        order; required for ``'decoupled'``."""
        self._set_learning_rates(lrs)
        for b in self.bucket_backends:
            standardized = b.bucket.entries[0].tag
            path = b.backend
            if path == 'triton':
                path = self._kernel_step(b, standardized)
            if path == 'loop':
                self._step_loop(b.bucket, b.per_row(), standardized)
            elif path == 'torch':
                step = self._step_p2 if self.p == 2 else self._step_general
                step(b.bucket, b.bucket.gather(),
                     b.per_row().split(b.bucket.segment_rows), standardized)

    def _kernel_step(self, b: BucketBackend,
                     standardized: bool) -> Optional[str]:
        """The fused step of one bucket, its first use checked against the
        torch reference (:meth:`BucketBackend.first_use`). None when done,
        else the torch path to take now: ``'torch'`` after a failed check
        (from now on) or before the first check of a coupled step whose
        gradients are laid out unlike their weights, ``'loop'`` for such a
        step once checked."""
        coupled = self.mode == 'coupled'
        if b.unchecked:
            grads = [p.grad for p in b.bucket.params if p.grad is not None]
            if coupled and not grads:
                return None  # no gradient this step: nothing to do
            if coupled and b.table.grad_addresses() is None:
                return 'torch'  # checked on a later step

            def kernel():
                kernels.shifted_l2_rows(b.table, b.per_param(), self.eps,
                                        standardized, coupled)

            def reference():
                self._step_p2(b.bucket, b.bucket.gather(),
                              b.per_row().split(b.bucket.segment_rows),
                              standardized)

            # coupled steps write gradients only; the weights are checked too
            done, _ = b.first_use('shifted regularizer', self._warned,
                                  b.bucket.params + (grads if coupled else []),
                                  kernel, reference)
            return None if done else 'torch'
        if kernels.shifted_l2_rows(b.table, b.per_param(), self.eps,
                                   standardized, coupled):
            return None
        return 'loop'  # a gradient with another layout than its weight

    def _step_loop(self, bucket, coef, standardized) -> None:
        """Per parameter: a few small kernels each (cheap on CPU)."""
        coupled = self.mode == 'coupled'
        for e, c in zip(bucket.entries,
                        coef.split([e.rows for e in bucket.entries])):
            p = e.param
            if coupled and p.grad is None:
                continue
            target = p.grad if coupled else p
            m = p.reshape(e.rows, -1)
            if self.p != 2:
                delta = (shifted_lp_grad(m, self.eps, self.p, standardized) *
                         c[:, None]).view(p.shape)
                target.add_(delta) if coupled else target.sub_(delta)
                continue
            a, b = _affine_p2(m, c, self.eps, standardized)
            shape = (-1, ) + (1, ) * (p.dim() - 1)
            if coupled and a.dtype == p.dtype:
                target.addcmul_(p, a.view(shape))
            elif coupled:  # low precision: see _step_p2
                target.add_(p * a.view(shape))
            else:
                target.mul_((1 - a).view(shape))
            if b is not None:
                target.add_(b.view(shape)) if coupled else \
                    target.sub_(b.view(shape))

    def _step_p2(self, bucket, flat, coefs, standardized) -> None:
        """One broadcasting foreach pass over the weights (no delta buffer)."""
        ab = [
            _affine_p2(m, c, self.eps, standardized)
            for m, c in zip(bucket.matrices(flat), coefs)
        ]
        a = bucket.row_views(torch.cat([x for x, _ in ab]))
        b = bucket.row_views(torch.cat([y for _, y in ab])) \
            if standardized else None
        params = bucket.params
        if self.mode == 'coupled':
            keep = [i for i, p in enumerate(params) if p.grad is not None]
            if not keep:  # no gradient this step (foreach needs a tensor)
                return
            grads = [params[i].grad for i in keep]
            kept, coef = [params[i] for i in keep], [a[i] for i in keep]
            if kept[0].dtype == coef[0].dtype:
                torch._foreach_addcmul_(grads, kept, coef)
            else:  # fp16 / bf16 weights, fp32 coefficients: the product in
                # fp32, rounded once when added (torch 2.1's CPU addcmul_
                # refuses mixed dtypes; torch's foreach loops on them anyway)
                torch._foreach_add_(grads, torch._foreach_mul(kept, coef))
            if b is not None:
                torch._foreach_add_(grads, [b[i] for i in keep])
        else:  # w <- w - (a w + b)  (a, b already include lr * lambda)
            torch._foreach_mul_(params, [1 - x for x in a])
            if b is not None:
                torch._foreach_sub_(params, b)

    def _step_general(self, bucket, flat, coefs, standardized) -> None:
        delta = bucket.scratch('delta', torch.float32)
        for m, c, out in zip(
                bucket.matrices(flat), coefs, bucket.matrices(delta)):
            torch.mul(
                shifted_lp_grad(m, self.eps, self.p, standardized),
                c[:, None],
                out=out)
        if self.mode == 'coupled':
            pairs = [(e.param.grad, d)
                     for e, d in zip(bucket.entries, bucket.chunks(delta))
                     if e.param.grad is not None]
            if pairs:
                torch._foreach_add_(*map(list, zip(*pairs)))
        else:
            torch._foreach_sub_(bucket.params, bucket.chunks(delta))
