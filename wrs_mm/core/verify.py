"""Numerical check of an invariance report on the loss itself, with three
outcomes per weight: ``invariant``, ``not invariant`` or ``cannot tell``.

A check means something only where the loss can see the weight, so every
test is paired with the loss's own sensitivity to the same weights: the
relative loss change when they are moved in a way that is *not* a rescale
(additive noise of half their size).

* The weights the report calls invariant: each weight vector (output channel,
  group or tensor) is multiplied by a random factor in [0.5, 2]
  (weight-standardised ones also get a per-channel constant added), all at
  once. A loss change above ``rtol`` contradicts the report (a failure);
  otherwise they are ``invariant`` if the noise moves the loss by more than
  ``10 rtol``, else ``cannot tell`` (the loss barely depends on them here).
* A sample of the weights called *not* invariant, one at a time: ``not
  invariant`` when the rescale moves the loss beyond its resolution (ten
  times the difference of two identical forwards, at least 1e-6); near a
  stationary point a [0.5, 2] rescale can be invisible (a random weight is
  almost orthogonal to its gradient: a classifier at init), so it is
  repeated with factors in [0.1, 10]. When neither moves the loss:
  ``cannot tell`` if the noise does not move it either (the loss ignores the
  weight at this point: zero-initialised gammas, hard-negative mining, layer
  scale 1e-6), and a contradiction (a failure) if the noise does: the loss
  depends on the weight but not on its scale.

Only contradictions fail; ``cannot tell`` is reported as a warning. The
random state of every generator
(CPU, every CUDA device, numpy, ``random``) is reset before every forward, so
that stochastic parts of the loss (dropout, RoI sampling) draw the same
numbers; weights, buffers and the random states are restored afterwards.

On GPUs the forwards run with TF32 off (cuDNN convolutions and matmuls) and
cuDNN in deterministic mode, restored afterwards: TF32 rounds inputs to 10
mantissa bits, which alone moves a ResNet-50 loss by ~1e-3 under a rescale.
The loss is computed twice at the start; the difference is the forward's own
noise, reported with the result and used to name the likely cause of a
failure (a nondeterministic op, TF32 left on, or the normalisation eps).

Normalisations divide by ``sqrt(var + eps)`` (weight standardisation by ``std +
eps``), which makes them invariant only up to ``eps / var``; with
``exact=True`` (default) the ``eps`` of every normalisation layer and of every
layer that standardises its weight is set to 1e-12 during the check, so that
the structural claim is tested and not this (known, small) approximation.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch
from torch import nn

from .invariance import NORMS, _restore_buffers, _snapshot_buffers
from .rng import get_rng_states, set_rng_states
from .verdicts import InvarianceReport

INVARIANT, NOT_INVARIANT, CANNOT_TELL = ('invariant', 'not invariant',
                                         'cannot tell')
CONTRADICTION = 'contradiction'  # a measurement refutes the report


@dataclass
class VerifyResult:
    """``ok`` unless a measurement contradicts the report (``failures``).

    ``outcomes``: per checked weight, ``invariant`` / ``not invariant`` /
    ``cannot tell`` (or ``contradiction``, with a failure); ``sensitivity``:
    the relative loss change under the non-rescale perturbation (of the
    whole invariant set for its weights);
    ``refused_rel_change``: the change when a refused weight is rescaled;
    ``warnings``: the ``cannot tell`` cases, in words.
    """
    loss: float
    invariant_rel_change: float
    invariant_count: int
    refused_rel_change: Dict[str, float] = field(default_factory=dict)
    rtol: float = 1e-4
    failures: List[str] = field(default_factory=list)
    noise_rel: float = 0.  # two identical forwards differ by this much
    precautions: List[str] = field(default_factory=list)  # what was done
    outcomes: Dict[str, str] = field(default_factory=dict)
    sensitivity: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def resolution(self) -> float:
        """The smallest relative loss change taken as a change."""
        return max(10 * self.noise_rel, 1e-6)

    def counts(self) -> Dict[str, int]:
        out = dict.fromkeys(
            (INVARIANT, NOT_INVARIANT, CANNOT_TELL, CONTRADICTION), 0)
        for v in self.outcomes.values():
            out[v] += 1
        return out


def _rows_factor(p: torch.Tensor,
                 rows: int,
                 gen,
                 wide: bool = False) -> torch.Tensor:
    """A random factor per row: in [0.5, 2], or log-uniform in [0.1, 10]."""
    if wide:
        f = torch.empty(rows).uniform_(
            -1, 1, generator=gen).exp_().pow_(math.log(10))
    else:
        f = torch.empty(rows).uniform_(0.5, 2, generator=gen)
    return f.repeat_interleave(p.numel() // rows).view(p.shape).to(p)


def _eps_modules(model: nn.Module, report: InvarianceReport) -> list:
    ws = {v.name.rsplit('.', 1)[0] for v in report.values() if v.kind == 'ws'}
    return [
        m for n, m in model.named_modules()
        if (isinstance(m, NORMS) or n in ws)
        and isinstance(getattr(m, 'eps', None), float)
    ]


def verify_invariance(model: nn.Module,
                      forward: Callable[[], torch.Tensor],
                      report: InvarianceReport,
                      rtol: float = 1e-4,
                      num_refused: int = 8,
                      seed: int = 0,
                      exact: bool = True,
                      allow_tf32: bool = False) -> VerifyResult:
    """Check ``report`` numerically; see the module docstring.

    Args:
        forward: returns the scalar training loss (same batch every call).
        num_refused: how many non-invariant weights to perturb (evenly spread).
        exact: set normalisation eps to 1e-12 during the check.
        allow_tf32: keep TF32 / nondeterministic cuDNN as configured (by
            default both are switched off during the check).
    """
    eps_saved = [(m, m.eps)
                 for m in (_eps_modules(model, report) if exact else ())]
    precautions = [
        f'random state of cpu + {torch.cuda.device_count()} cuda '
        'device(s), numpy, random reset before every forward'
    ]
    if eps_saved:
        precautions.append(f'eps=1e-12 in {len(eps_saved)} layers')
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    flags = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic,
             cudnn.benchmark)
    if not allow_tf32:
        cudnn.allow_tf32 = matmul.allow_tf32 = False
        cudnn.deterministic, cudnn.benchmark = True, False
        precautions.append('tf32 off (cudnn, matmul), cudnn deterministic')
    for m, _ in eps_saved:
        m.eps = 1e-12
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            result = _verify(model, forward, report, rtol, num_refused, seed)
        result.precautions = precautions
        if result.invariant_rel_change > rtol:
            result.failures.append(
                _likely_cause(result, exact, flags, allow_tf32))
        return result
    finally:
        for m, eps in eps_saved:
            m.eps = eps
        (cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic,
         cudnn.benchmark) = flags


def _likely_cause(result: VerifyResult, exact: bool, flags,
                  allow_tf32: bool) -> str:
    if result.noise_rel > result.rtol / 10:
        return (f'likely cause: the forward is not deterministic (two '
                f'identical forwards differ by {result.noise_rel:.2e}); use '
                'torch.use_deterministic_algorithms(True) or a larger rtol')
    if allow_tf32 and (flags[0] or flags[1]):
        return ('likely cause: TF32 is on (torch.backends.cudnn.allow_tf32 / '
                'cuda.matmul.allow_tf32); run with allow_tf32=False')
    if not exact:
        return ('likely cause: the normalisation eps (invariance holds only '
                'up to eps / var); run with exact=True')
    return ('likely cause: the weight is not invariant (the analysis is '
            'wrong for this model; please report it)')


def _noise(p: torch.Tensor, gen) -> torch.Tensor:
    """Additive noise of half the weight's size: a change that is not a
    rescale."""
    return 0.5 * p.detach().float().std() * torch.randn(
        p.shape, generator=gen).to(p)


class _Perturbations:
    """The loss of one fixed forward (random generators reset each time)
    under perturbations of the model's weights, each undone after."""

    def __init__(self, model, forward, seed: int):
        self.params = dict(model.named_parameters())
        self.saved = {n: p.detach().clone() for n, p in self.params.items()}
        self.forward, self.states = forward, get_rng_states()
        self.gen = torch.Generator().manual_seed(seed)
        self.base = self.loss()

    def loss(self) -> float:
        set_rng_states(self.states)
        with torch.no_grad():
            return float(self.forward())

    def change(self, perturb) -> float:
        """Relative loss change with ``perturb()`` applied, then undone."""
        with torch.no_grad():
            names = perturb()
        r = abs(self.loss() - self.base) / max(abs(self.base), 1e-12)
        with torch.no_grad():
            for n in names:
                self.params[n].copy_(self.saved[n])
        return r

    def rescale(self, vs, wide: bool = False) -> list:
        for v in vs:
            p = self.params[v.name]
            p.mul_(_rows_factor(p, v.rows or p.shape[0], self.gen, wide))
            if v.kind == 'ws':
                p.add_(
                    _rows_factor(p, p.shape[0], self.gen) *
                    self.saved[v.name].std())
        return [v.name for v in vs]

    def noise(self, vs) -> list:
        for v in vs:
            self.params[v.name].add_(_noise(self.params[v.name], self.gen))
        return [v.name for v in vs]

    def restore(self) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.saved[n])


def _verify(model, forward, report, rtol, num_refused, seed) -> VerifyResult:
    buffers = _snapshot_buffers(model)
    probe = None
    try:
        probe = _Perturbations(model, forward, seed)
        noise_rel = abs(probe.loss() - probe.base) / max(
            abs(probe.base), 1e-12)
        inv = report.invariant()
        rel = probe.change(lambda: probe.rescale(inv)) if inv else 0.
        result = VerifyResult(
            probe.base, rel, len(inv), rtol=rtol, noise_rel=noise_rel)
        if inv:
            _judge_invariant(probe, inv, rel, result)
        refused = [
            v for v in report.candidates() if not v.invariant and v.in_graph
        ]
        step = max(1, len(refused) // max(num_refused, 1))
        for v in refused[::step][:num_refused]:
            _judge_refused(probe, v, result)
        return result
    finally:
        if probe is not None:
            probe.restore()
        _restore_buffers(buffers)


def _judge_invariant(probe: _Perturbations, inv, rel: float,
                     result: VerifyResult) -> None:
    """The invariant weights together: rescaled (``rel``), and under noise."""
    sens = probe.change(lambda: probe.noise(inv))
    if rel > result.rtol:
        outcome = CONTRADICTION
        result.failures.append(
            f'loss changed by {rel:.2e} (> {result.rtol}) when the '
            f'{len(inv)} invariant weights were rescaled')
    elif sens > 10 * result.rtol:
        outcome = INVARIANT
    else:
        outcome = CANNOT_TELL
        result.warnings.append(
            f'cannot tell for the {len(inv)} invariant weights: the '
            f'loss moves by only {sens:.2e} even when they are '
            f'perturbed by noise (rescaled: {rel:.2e})')
    for v in inv:
        result.outcomes[v.name] = outcome
        result.sensitivity[v.name] = sens


def _judge_refused(probe: _Perturbations, v, result: VerifyResult) -> None:
    """One weight called not invariant: its rows rescaled, then noise."""
    r = probe.change(lambda: probe.rescale([v]))
    result.refused_rel_change[v.name] = r
    if r <= result.resolution:  # near a stationary point: go wider
        r = max(r, probe.change(lambda: probe.rescale([v], wide=True)))
    if r > result.resolution:
        result.outcomes[v.name] = NOT_INVARIANT
        return
    sens = probe.change(lambda: probe.noise([v]))
    result.sensitivity[v.name] = sens
    if sens > max(10 * result.rtol, 10 * result.resolution):
        result.outcomes[v.name] = CONTRADICTION
        result.failures.append(
            f'{v.name}: called not invariant ({v.reason}) but the '
            f'loss changed only by {r:.2e} when its rows were '
            'rescaled (by up to 10x), while noise on it moves the '
            f'loss by {sens:.2e}')
    else:
        result.outcomes[v.name] = CANNOT_TELL
        result.warnings.append(
            f'cannot tell for {v.name}: the loss moves by {r:.2e} '
            f'when it is rescaled and by {sens:.2e} under noise (it '
            'barely depends on this weight here)')
