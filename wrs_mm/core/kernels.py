"""Fused Triton kernels for WRS and the shifted-L2 step: one launch per
(device, dtype) over a table of rows, whatever the number of weights.

A *row* is one weight vector: a contiguous block of ``L`` elements of a
parameter whose first dimension is outermost in memory (contiguous or
channels_last conv weights; norms, means and stds do not depend on the order
inside a row). The row table holds, per row, the index of its parameter, its
first element and its length; a per-parameter table holds the parameters' (and,
for the coupled shifted step, their gradients') addresses. One program handles
one row: it reduces the row in fp32 and rewrites it while it is in cache, so a
rescale moves about the bytes of one ``torch._foreach_mul_``.

Triton is optional: :func:`available` says whether the kernels can run on a
tensor's device (CUDA with Triton >= 3.0 installed, :data:`UNAVAILABLE` says
why not, or any device under Triton's interpreter, ``TRITON_INTERPRET=1``,
which the tests use on CPU). The pure-torch implementations in :mod:`.rescale`
/ :mod:`.shifted_lp` are the reference these kernels are tested against.
"""
import os
from typing import List, Optional, Sequence

import torch

from .compat import MIN_TRITON, version_tuple

try:  # Triton ships with CUDA builds of torch; CPU-only installs lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

#: why the kernels cannot run in this installation (None when they can)
UNAVAILABLE = None
if triton is None:
    UNAVAILABLE = 'Triton is not installed'
elif version_tuple(triton.__version__) < MIN_TRITON[0]:
    UNAVAILABLE = (f'Triton {triton.__version__} is older than '
                   f'{MIN_TRITON[0][0]}.{MIN_TRITON[0][1]}, the oldest the '
                   f'kernels run on (torch >= {MIN_TRITON[1]} ships it)')
    triton = None

BLOCK = 1024  # elements a program reads per iteration of its row loop


def interpreted() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def available(device: torch.device) -> bool:
    """Whether the Triton kernels can run on ``device``."""
    if triton is None:
        return False
    return interpreted() or device.type == 'cuda'


def row_blocks_ok(p: torch.Tensor, rows: int) -> bool:
    """Whether each of the ``rows`` weight vectors of ``p`` is one contiguous
    block of memory (dimension 0 outermost, no gaps), so that the kernels may
    address rows by offset."""
    if p.numel() == 0 or p.dim() == 0:
        return p.numel() > 0
    expected = 1  # dense: strides sorted ascending are running sizes
    for size, stride in sorted(zip(p.shape, p.stride()), key=lambda x: x[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return p.shape[0] == 1 or p.stride(0) == p.numel() // p.shape[0]


def upload(values: Sequence, dtype: torch.dtype,
           device: torch.device) -> torch.Tensor:
    """``values`` as a tensor on ``device`` without a host synchronisation
    (through pinned memory on CUDA)."""
    host = torch.tensor(values, dtype=dtype)
    if device.type == 'cuda':
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


class RowTable:
    """Device tables describing ``params`` split into ``rows`` each."""

    def __init__(self, params: Sequence[torch.Tensor], rows: Sequence[int]):
        self.params = list(params)
        device = self.params[0].device
        pidx: List[int] = []
        start: List[int] = []
        length: List[int] = []
        for i, (p, r) in enumerate(zip(self.params, rows)):
            n = p.numel() // r
            pidx += [i] * r
            start += range(0, p.numel(), n)
            length += [n] * r
        self.rows = len(pidx)
        self.pidx = torch.tensor(pidx, dtype=torch.int32, device=device)
        self.start = torch.tensor(start, dtype=torch.int64, device=device)
        self.length = torch.tensor(length, dtype=torch.int32, device=device)
        self._param_ptrs = None
        self._param_addr = None
        self._grad_ptrs = None
        self._grad_addr = None

    def param_addresses(self) -> torch.Tensor:
        """Addresses of the parameters (re-uploaded only when one moved, e.g.
        after ``model.to()``)."""
        ptrs = [p.data_ptr() for p in self.params]
        if ptrs != self._param_ptrs:
            self._param_addr = upload(ptrs, torch.int64, self.params[0].device)
            self._param_ptrs = ptrs
        return self._param_addr

    def grad_addresses(self) -> Optional[torch.Tensor]:
        """Addresses of the gradients; 0 for a parameter without one (its
        rows are skipped). None when a gradient's layout or dtype differs
        from its parameter's (the caller then takes the torch path)."""
        ptrs = []
        for p in self.params:
            g = p.grad
            if g is None:
                ptrs.append(0)
            elif g.stride() != p.stride() or g.dtype != p.dtype:
                return None
            else:
                ptrs.append(g.data_ptr())
        if ptrs != self._grad_ptrs:
            self._grad_addr = upload(ptrs, torch.int64, self.params[0].device)
            self._grad_ptrs = ptrs
        return self._grad_addr


#: the weight dtypes the kernels are launched for
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _tl_dtype(dtype: torch.dtype):
    return getattr(tl, str(dtype).split('.')[1])


if triton is not None:

    @triton.jit
    def _rescale_rows(addr_ptr, pidx_ptr, start_ptr, len_ptr, target_ptr,
                      norm_ptr, DTYPE: tl.constexpr, APPLY: tl.constexpr,
                      BLOCK: tl.constexpr):
        """norm_j = ||w_j||_2 (fp32); if APPLY, w_j <- target * w_j / norm_j
        (the target of w_j's parameter) for the rows of finite, non-zero
        norm."""
        row = tl.program_id(0)
        pi = tl.load(pidx_ptr + row)
        n = tl.load(len_ptr + row)
        base = tl.load(addr_ptr + pi).to(tl.pointer_type(DTYPE)) + \
            tl.load(start_ptr + row)
        offs = tl.arange(0, BLOCK)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        i = 0
        while i < n:  # a while loop: Triton's interpreter needs it here
            m = i + offs < n
            x = tl.load(base + i + offs, mask=m, other=0.).to(tl.float32)
            acc += x * x
            i += BLOCK
        norm = tl.sqrt(tl.sum(acc, axis=0))
        tl.store(norm_ptr + row, norm)
        if APPLY:
            ok = (norm > 0) & (norm < float('inf'))
            scale = tl.where(ok, tl.load(target_ptr + pi) / norm, 1.)
            i = 0
            while i < n:
                m = i + offs < n
                x = tl.load(base + i + offs, mask=m, other=0.).to(tl.float32)
                tl.store(base + i + offs, (x * scale).to(DTYPE), mask=m)
                i += BLOCK

    @triton.jit
    def _shifted_l2_rows(addr_ptr, gaddr_ptr, coef_ptr, pidx_ptr, start_ptr,
                         len_ptr, eps, DTYPE: tl.constexpr,
                         STANDARDIZED: tl.constexpr, COUPLED: tl.constexpr,
                         BLOCK: tl.constexpr):
        """coef * dR/dw_j = a_j w_j + b_j (see ``shifted_lp._affine_p2``);
        coupled: grad_j += a_j w_j + b_j, decoupled: w_j -= a_j w_j + b_j."""
        row = tl.program_id(0)
        pi = tl.load(pidx_ptr + row)
        n = tl.load(len_ptr + row)
        start = tl.load(start_ptr + row)
        coef = tl.load(coef_ptr + pi)
        base = tl.load(addr_ptr + pi).to(tl.pointer_type(DTYPE)) + start
        offs = tl.arange(0, BLOCK)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        mu = 0.
        if STANDARDIZED:  # two-pass mean and unbiased std, as torch.std_mean
            i = 0
            while i < n:
                m = i + offs < n
                acc += tl.load(
                    base + i + offs, mask=m, other=0.).to(tl.float32)
                i += BLOCK
            mu = tl.sum(acc, axis=0) / n
            acc = tl.zeros([BLOCK], dtype=tl.float32)
        i = 0
        while i < n:
            m = i + offs < n
            x = tl.load(base + i + offs, mask=m, other=0.).to(tl.float32)
            d = tl.where(m, x - mu, 0.)
            acc += d * d
            i += BLOCK
        if STANDARDIZED:
            s = tl.sqrt(tl.sum(acc, axis=0) / (n - 1))
            a = tl.where(s > 0, coef * (1 - eps / s), 0.)
            b = tl.where(s > 0, coef * eps * mu / s, coef * mu)
        else:
            s = tl.sqrt(tl.sum(acc, axis=0))
            a = tl.where(s > 0, coef * (1 - eps / s), 0.)
            b = 0.
        gaddr = tl.load(gaddr_ptr + pi)
        if COUPLED:
            gbase = gaddr.to(tl.pointer_type(DTYPE)) + start
            if gaddr != 0:  # a weight without gradient is left alone
                i = 0
                while i < n:
                    m = i + offs < n
                    x = tl.load(
                        base + i + offs, mask=m, other=0.).to(tl.float32)
                    g = tl.load(
                        gbase + i + offs, mask=m, other=0.).to(tl.float32)
                    tl.store(
                        gbase + i + offs, (g + a * x + b).to(DTYPE), mask=m)
                    i += BLOCK
        else:
            i = 0
            while i < n:
                m = i + offs < n
                x = tl.load(base + i + offs, mask=m, other=0.).to(tl.float32)
                tl.store(base + i + offs, (x - a * x - b).to(DTYPE), mask=m)
                i += BLOCK


def rescale_rows(table: RowTable,
                 targets: torch.Tensor,
                 apply: bool = True) -> torch.Tensor:
    """Row norms (fp32, on the device) and, if ``apply``, the rescale to
    ``targets`` (fp32 on the device, one target norm per parameter)."""
    norms = torch.empty(
        table.rows, dtype=torch.float32, device=table.params[0].device)
    _rescale_rows[(table.rows, )](
        table.param_addresses(),
        table.pidx,
        table.start,
        table.length,
        targets,
        norms,
        DTYPE=_tl_dtype(table.params[0].dtype),
        APPLY=apply,
        BLOCK=BLOCK)
    return norms


def shifted_l2_rows(table: RowTable, coef: torch.Tensor, eps: float,
                    standardized: bool, coupled: bool) -> bool:
    """One shifted-L2 step over the table; ``coef``: lambda (coupled) or
    ``lr * lambda`` (decoupled) per parameter, fp32 on the device. Returns
    False (and does nothing) when a gradient's layout differs from its
    weight's."""
    gaddr = table.grad_addresses() if coupled else table.param_addresses()
    if gaddr is None:
        return False
    _shifted_l2_rows[(table.rows, )](
        table.param_addresses(),
        gaddr,
        coef,
        table.pidx,
        table.start,
        table.length,
        float(eps),
        DTYPE=_tl_dtype(table.params[0].dtype),
        STANDARDIZED=standardized,
        COUPLED=coupled,
        BLOCK=BLOCK)
    return True
