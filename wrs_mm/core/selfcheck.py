"""First-use self-check of the fused Triton kernels (:mod:`.kernels`).

The first time a (device, dtype) bucket takes the Triton path, the step is
also computed by the pure-torch reference and the two are compared (the
values the kernel writes, and the norms it returns) at a tolerance that fits
the dtype. On an exception or a mismatch the tensors are put back as they were
before the kernel ran (nothing is left half-modified), a warning names the
GPU, the Triton and torch versions and the largest difference, and the caller
switches that bucket to the ``'torch'`` backend for the rest of the run.
"""
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch

#: largest accepted difference, relative to the tensor's scale (>= 1): fp32
#: and fp64 are summation-order noise, bf16 / fp16 one or two roundings
TOLERANCE = {
    torch.float64: 1e-9,
    torch.float32: 1e-5,
    torch.bfloat16: 2e-2,
    torch.float16: 4e-3,
}


def max_difference(got: Sequence[torch.Tensor],
                   expected: Sequence[torch.Tensor]) -> float:
    """Largest ``|got - expected|`` relative to ``max(|expected|, 1)`` over
    the pairs; ``inf`` for a non-finite value or a shape mismatch."""
    worst = 0.
    for g, e in zip(got, expected):
        if g.shape != e.shape:
            return float('inf')
        d = (g.float() - e.float()).abs().max() / \
            e.float().abs().max().clamp(min=1)
        d = float(d)  # one synchronisation, on first use only
        if d != d:
            return float('inf')
        worst = max(worst, d)
    return worst


def _restore(targets: Sequence[torch.Tensor],
             saved: Sequence[torch.Tensor]) -> None:
    for t, s in zip(targets, saved):
        t.copy_(s)


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{device.type} (Triton interpreter)'


@torch.no_grad()
def checked_kernel_call(
    targets: List[torch.Tensor],
    kernel: Callable[[], Optional[torch.Tensor]],
    reference: Callable[[], Optional[torch.Tensor]],
) -> Tuple[Optional[torch.Tensor], Optional[str], float]:
    """Run ``kernel`` (in place on ``targets``, returning per-row statistics
    or None) and check it against ``reference`` (the same step by the torch
    implementation).

    Returns ``(kernel result, None, difference)`` when they agree; else
    ``(None, what went wrong, difference)`` with ``targets`` restored to what
    they held before, for the caller to fall back.
    """
    dtype = targets[0].dtype
    before = [t.clone() for t in targets]
    ref_stats = reference()
    expected = [t.clone() for t in targets]
    _restore(targets, before)
    try:
        stats = kernel()
    except Exception as e:  # a compile or launch failure
        _restore(targets, before)
        return None, f'raised {type(e).__name__}: {e}', float('inf')
    diff = max_difference(targets, expected)
    if ref_stats is not None:
        diff = max(diff, max_difference([stats], [ref_stats]))
    tol = TOLERANCE.get(dtype, 1e-5)
    if not diff <= tol:
        _restore(targets, before)
        return None, (f'wrote values {diff:.3g} away from the reference '
                      f'(tolerance {tol:g} for {dtype})'), diff
    return stats, None, diff


def warn_fallback(owner: str, device: torch.device, dtype: torch.dtype,
                  what: str, diff: float, warned: set) -> None:
    """The warning of a failed self-check, once per (device, dtype) in
    ``warned`` (the caller's record)."""
    if (device, dtype) in warned:
        return
    warned.add((device, dtype))
    try:
        import triton
        version = triton.__version__
    except ImportError:  # pragma: no cover - no kernel ran without Triton
        version = 'not installed'
    warnings.warn(
        f'{owner}: the fused Triton kernel for {dtype} weights on '
        f'{device_name(device)} {what} (largest difference {diff:.3g}; '
        f'Triton {version}, torch {torch.__version__}). These weights use '
        "the 'torch' backend for the rest of the run; please report this "
        'with the message.',
        RuntimeWarning,
        stacklevel=3)
