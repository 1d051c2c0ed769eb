"""Numerical check of an invariance report on the loss itself.

For every weight the report calls invariant, each weight vector (output channel,
group or tensor) is multiplied by a random factor in [0.5, 2] (weight-standardised
ones also get a per-channel constant added), all at once, and the loss must stay
within ``rtol``. A sample of the weights called *not* invariant is perturbed one
at a time, and the loss must change by more than that measured change
(and more than 1e-6). The random state is reset before every forward, so that
stochastic parts of the loss (e.g. RoI sampling) draw the same numbers; weights,
buffers and the random state are restored afterwards.

Normalisations divide by ``sqrt(var + eps)`` (weight standardisation by
``std + eps``), which makes them invariant only up to ``eps / var``; with
``exact=True`` (default) the ``eps`` of every normalisation layer and of every
layer that standardises its weight is set to 1e-12 during the check, so that the
structural claim is tested and not this (known, small) approximation.
"""
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from .invariance import InvarianceReport, _restore_buffers, _snapshot_buffers


@dataclass
class VerifyResult:
    """``ok`` is true when the invariant set left the loss unchanged and every
    sampled non-invariant weight changed it."""
    loss: float
    invariant_rel_change: float
    invariant_count: int
    refused_rel_change: Dict[str, float] = field(default_factory=dict)
    rtol: float = 1e-4
    failures: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _rows_factor(p: torch.Tensor, rows: int, gen) -> torch.Tensor:
    f = torch.empty(rows).uniform_(0.5, 2, generator=gen)
    return f.repeat_interleave(p.numel() // rows).view(p.shape).to(p)


_NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def _eps_modules(model: nn.Module, report: InvarianceReport) -> list:
    ws = {v.name.rsplit('.', 1)[0] for v in report.values() if v.kind == 'ws'}
    return [m for n, m in model.named_modules()
            if (isinstance(m, _NORMS) or n in ws)
            and isinstance(getattr(m, 'eps', None), float)]


def verify_invariance(model: nn.Module, forward: Callable[[], torch.Tensor],
                      report: InvarianceReport, rtol: float = 1e-4,
                      num_refused: int = 8, seed: int = 0,
                      exact: bool = True) -> VerifyResult:
    """Check ``report`` numerically; see the module docstring.

    Args:
        forward: returns the scalar training loss (same batch every call).
        num_refused: how many non-invariant weights to perturb (evenly spread).
        exact: set normalisation eps to 1e-12 during the check.
    """
    eps_saved = [(m, m.eps) for m in (_eps_modules(model, report)
                                      if exact else ())]
    for m, _ in eps_saved:
        m.eps = 1e-12
    try:
        return _verify(model, forward, report, rtol, num_refused, seed)
    finally:
        for m, eps in eps_saved:
            m.eps = eps


def _verify(model, forward, report, rtol, num_refused, seed) -> VerifyResult:
    params = dict(model.named_parameters())
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())

    def loss() -> float:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        with torch.no_grad():
            return float(forward())

    buffers = _snapshot_buffers(model)
    saved = {n: p.detach().clone() for n, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    try:
        base = loss()
        inv = report.invariant()
        with torch.no_grad():
            for v in inv:
                p = params[v.name]
                p.mul_(_rows_factor(p, v.rows, gen))
                if v.kind == 'ws':
                    p.add_(_rows_factor(p, p.shape[0], gen) * saved[v.name].std())
        rel = abs(loss() - base) / max(abs(base), 1e-12)
        result = VerifyResult(base, rel, len(inv), rtol=rtol)
        if rel > rtol:
            result.failures.append(
                f'loss changed by {rel:.2e} (> {rtol}) when the '
                f'{len(inv)} invariant weights were rescaled')
        with torch.no_grad():
            for v in inv:
                params[v.name].copy_(saved[v.name])
        refused = [v for v in report.candidates()
                   if not v.invariant and v.in_graph]
        step = max(1, len(refused) // max(num_refused, 1))
        for v in refused[::step][:num_refused]:
            p = params[v.name]
            with torch.no_grad():
                p.mul_(_rows_factor(p, p.shape[0], gen))
            r = abs(loss() - base) / max(abs(base), 1e-12)
            with torch.no_grad():
                p.copy_(saved[v.name])
            result.refused_rel_change[v.name] = r
            if r <= max(rel, 1e-6):
                result.failures.append(
                    f'{v.name}: called not invariant ({v.reason}) but the '
                    f'loss changed only by {r:.2e}')
        return result
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
        _restore_buffers(buffers)
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
