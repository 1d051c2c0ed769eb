"""How one bucket of weights (:class:`~.rows.Bucket`: one device, dtype and
tag) is computed, shared by :class:`~.rescale.WeightRescaler` and
:class:`~.shifted_lp.ShiftedLpRegularizer`.

* ``'triton'``: one fused kernel launch for the bucket (:mod:`.kernels`); the
  default on CUDA when Triton is installed;
* ``'torch'``: the packed pure-torch reference; the default on CUDA without
  Triton;
* ``'loop'``: a few small kernels per parameter; the default on CPU, where
  launches are cheap and the packed copy is not.

A :class:`BucketBackend` holds the bucket's choice, the kernel's row table,
one value per parameter (a target norm, a coefficient) on the host and on
the device, in the layout the backend reads (per parameter for the kernel,
per row for the torch paths), and whether the kernel's first use is still to
be checked against the reference (:meth:`BucketBackend.first_use`, the one
self-check-and-fallback path; :mod:`.selfcheck`).
"""
from typing import Callable, List, Optional, Sequence

import torch

from . import kernels
from .compat import MIN_TRITON
from .rows import Bucket
from .selfcheck import checked_kernel_call, warn_fallback

BACKENDS = ('auto', 'triton', 'torch', 'loop')


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
            why = kernels.UNAVAILABLE or f'the weights are on {device}'
            raise ValueError(f'{owner}: backend="triton" needs Triton >= '
                             f'{MIN_TRITON[0][0]}.{MIN_TRITON[0][1]} and a '
                             f'CUDA device (or TRITON_INTERPRET=1): {why}; '
                             'use "torch" or "loop"')
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


class BucketBackend:
    """One bucket's backend, kernel table, values and self-check state.

    Args:
        bucket: the weights.
        backend: ``'triton'``, ``'torch'`` or ``'loop'`` (chosen).
        values: one number per entry of ``bucket`` (host).
        self_check: whether the kernel's first use is to be checked.
    """

    def __init__(self, bucket: Bucket, backend: str, values: Sequence[float],
                 self_check: bool):
        self.bucket, self.backend = bucket, backend
        self.table = kernels.RowTable(
            bucket.params,
            [e.rows for e in bucket.entries]) if backend == 'triton' else None
        self.unchecked = backend == 'triton' and self_check
        self.values: List[float] = []
        self.set_values(values)

    @property
    def device(self) -> torch.device:
        return self.bucket.entries[0].param.device

    def set_values(self, values: Sequence[float]) -> None:
        """New per-parameter values (uploaded without a host
        synchronisation, in the layout of the backend)."""
        self.values = list(values)
        self._per_param = kernels.upload(
            self.values, torch.float32,
            self.device) if self.backend == 'triton' else None
        self._per_row: Optional[torch.Tensor] = None

    def per_param(self) -> torch.Tensor:
        """The values, one per parameter, on the device (the kernel's)."""
        if self._per_param is None:
            self._per_param = kernels.upload(self.values, torch.float32,
                                             self.device)
        return self._per_param

    def per_row(self) -> torch.Tensor:
        """The values repeated over each parameter's rows, on the device
        (the torch paths')."""
        if self._per_row is None:
            self._per_row = self.bucket.per_row(self.values).to(self.device)
        return self._per_row

    def first_use(self, owner: str, warned: set, tensors: List[torch.Tensor],
                  kernel: Callable, reference: Callable) -> tuple:
        """The kernel's first use, checked against ``reference`` (the same
        step by the torch path) on ``tensors``, which the step writes:
        ``(True, the kernel's result)``, or ``(False, None)`` with the tensors
        as before, a warning (once per device and dtype in ``warned``) and
        the bucket on ``'torch'`` from now on."""
        self.unchecked = False
        out, what, diff = checked_kernel_call(tensors, kernel, reference)
        if what is None:
            return True, out
        warn_fallback(owner, self.device, self.bucket.params[0].dtype, what,
                      diff, warned)
        self.backend, self.table = 'torch', None
        return False, None
