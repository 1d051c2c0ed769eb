"""Which weights is the training loss invariant to rescaling, and how?

Liu et al. 2021 (Sec. 3) and Li et al. (Sec. 3): a weight vector feeding a
normalisation that uses batch statistics can be rescaled without changing the
network function. This module finds such weights by following the data of one
real training forward, not module names:

* every conv / linear op that receives a parameter as its weight
  (``F.conv*d``, ``F.linear``, whichever module calls it) is recorded with the
  autograd node of its output: the weight's own op, not the output of the
  module that owns it (Detectron2's ``Conv2d`` applies its ``norm`` and
  activation inside its own forward); every Conv / Linear module call is
  recorded too, for layers that transform their weight before the op;
* every normalisation call is recorded with its input and output nodes and
  whether it normalises with batch statistics (Detectron2's
  ``FrozenBatchNorm2d`` never does);
* the autograd graph of the loss is walked backwards to list, for each node,
  the nodes that consume it;
* a weight is invariant when *every* path from *every* use of its op's output
  to the loss passes through a normalisation of that output using batch
  statistics (a dtype cast in between is transparent; a normalisation written
  as several ops, such as Detectron2's ``NaiveSyncBatchNorm`` across ranks,
  counts as one): BatchNorm / SyncBatchNorm / InstanceNorm give per-channel
  invariance (a bias is allowed, the channel mean removes it), GroupNorm per
  group of channels, LayerNorm the whole tensor (both require no bias);
* a layer that standardises its own weight is recognised by its class (mmcv
  ``ConvWS2d``, ``ConvAWS2d``, timm ``StdConv2d``, ...); a layer with a
  forward of its own by a probe on its recorded input: the weight's
  contribution (bias removed) does not change when each output channel is
  scaled and shifted. Plain torch layers never are.

Frozen normalisation (``eval()`` / mmdet ``norm_eval=True``) uses running
statistics and is *not* invariant. :func:`verify_invariance` checks the result
numerically on the loss itself. Each parameter's answer is a
:class:`~wrs_mm.core.verdicts.Verdict` with a
:class:`~wrs_mm.core.verdicts.Reason` code (:mod:`wrs_mm.core.verdicts`).
"""
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.overrides import TorchFunctionMode

from .verdicts import (InvarianceReport, ParamInvariance, Reason, Verdict,
                       granularity_of)

#: the normalisations whose batch statistics make a weight invariant
NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
_PRODUCERS = (nn.modules.conv._ConvNd, nn.Linear)
#: the ops whose second argument (``weight``) is a weight matrix with one
#: output channel per row of dim 0
WEIGHT_OPS = frozenset((F.conv1d, F.conv2d, F.conv3d, F.linear))
#: the same with the channels on dim 1 (refused)
TRANSPOSED_OPS = frozenset(
    (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d))
#: normalisations with frozen statistics that are no torch norm subclass
FROZEN_NORMS = ('FrozenBatchNorm2d', )
_PASS_THROUGH = ('ToCopyBackward0', )
_UNUSED = 'output does not reach the loss (unused, or no autograd history)'
_NOT_A_LAYER = ('not the weight of a Conv/Linear layer called in the '
                'training forward')


@dataclass
class _NormCall:
    module: str
    cls: str
    batch_stats: bool
    rows: Callable[[int], int]  # output channels -> invariant rows
    needs_no_bias: bool
    eps: Optional[float] = None
    var: Optional[torch.Tensor] = None  # per channel (or 1), what it divides
    source: object = None  # the autograd node of its input


@torch.no_grad()
def _batch_variance(m: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
    """The variance the normalisation ``m`` divides by, per channel of its
    input ``x`` (the smallest over samples for per-sample norms; one value
    for LayerNorm)."""
    x = x.detach().float()
    if isinstance(m, _BatchNorm):
        return x.transpose(0, 1).reshape(x.shape[1], -1).var(1, False)
    if x.dim() < 2:
        return None
    n, c = x.shape[:2]
    if isinstance(m, _InstanceNorm):
        return x.reshape(n, c, -1).var(-1, False).min(0)[0]
    if isinstance(m, nn.GroupNorm):
        g = m.num_groups
        return x.reshape(n, g, -1).var(-1, False).min(0)[0] \
            .repeat_interleave(c // g)
    if isinstance(m, nn.LayerNorm):
        k = math.prod(m.normalized_shape)
        return x.reshape(-1, k).var(-1, False).min().reshape(1)
    return None


class _WeightOps(TorchFunctionMode):
    """Records, per parameter passed as the ``weight`` of a conv / linear op,
    the autograd nodes of the op's outputs."""

    def __init__(self, params: Dict[int, nn.Parameter]):
        super().__init__()
        self.params = params
        self.calls: Dict[int, list] = defaultdict(list)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in WEIGHT_OPS or func in TRANSPOSED_OPS:
            w = args[1] if len(args) > 1 else kwargs.get('weight')
            if id(w) in self.params and self.params[id(w)] is w and \
                    isinstance(out, torch.Tensor):
                bias = args[2] if len(args) > 2 else kwargs.get('bias')
                self.calls[id(w)].append((out.grad_fn, func
                                          in TRANSPOSED_OPS, bias is not None))
        return out


class InvarianceRecorder:
    """Records weight ops, layer and normalisation calls while active (a
    context manager).

    Hooks are global module hooks and a torch function mode installed only
    inside the ``with`` block, so nothing is left on the model (safe for
    ``deepcopy``, EMA copies, DDP).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {m: n for n, m in model.named_modules()}
        self.layer_calls: Dict[nn.Module, list] = defaultdict(list)
        self.norm_calls: Dict[object, _NormCall] = {}
        self.ops = _WeightOps({id(p): p for p in model.parameters()})
        self._handle = None

    @property
    def op_calls(self) -> Dict[int, list]:
        """``{id(param): [(output node, transposed, has bias)]}`` of the ops
        it is the weight of."""
        return self.ops.calls

    def __enter__(self):
        self._handle = nn.modules.module.register_module_forward_hook(
            self._hook)
        self.ops.__enter__()
        return self

    def __exit__(self, *exc):
        self.ops.__exit__(*exc)
        self._handle.remove()

    def _hook(self, module, inputs, output):
        if module not in self.names or not isinstance(output, torch.Tensor):
            return
        node = output.grad_fn
        x = inputs[0] if inputs and isinstance(inputs[0],
                                               torch.Tensor) else None
        if isinstance(module, _PRODUCERS):
            self.layer_calls[module].append(
                (node, None if x is None else x[:1].detach()))
        elif node is not None:
            call = _norm_call(module, self.names[module])
            if call is not None:
                call.eps = getattr(module, 'eps', None)
                if call.batch_stats and x is not None:
                    call.var = _batch_variance(module, x)
                call.source = None if x is None else x.grad_fn
                self.norm_calls[node] = call


def _norm_call(m: nn.Module, name: str) -> Optional[_NormCall]:
    cls = type(m).__name__
    if isinstance(m, _BatchNorm):
        stats = (
            m.training or not m.track_running_stats or m.running_mean is None)
        return _NormCall(name, cls, stats, lambda c: c, False)
    if isinstance(m, _InstanceNorm):
        stats = m.training or not m.track_running_stats
        return _NormCall(name, cls, stats, lambda c: c, False)
    if isinstance(m, nn.GroupNorm):
        g = m.num_groups
        return _NormCall(name, f'{cls}({g} groups)', True, lambda c: g
                         if c % g == 0 else 1, True)
    if isinstance(m, nn.LayerNorm):
        return _NormCall(name, cls, True, lambda c: 1, True)
    if cls in FROZEN_NORMS:
        return _NormCall(name, cls, False, lambda c: c, False)
    return None


def _consumers(roots) -> Dict[object, list]:
    """Reverse adjacency of the autograd graph reachable from ``roots``."""
    consumers: Dict[object, list] = defaultdict(list)
    seen, stack = set(), [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                consumers[nxt].append(node)  # also keeps the node alive
                stack.append(nxt)
    return dict(consumers)


def _effective(node, consumers) -> list:
    out = []
    for c in consumers.get(node, ()):
        if type(c).__name__ in _PASS_THROUGH:
            out.extend(_effective(c, consumers))
        else:
            out.append(c)
    return out


#: layers known to standardise their weight per output channel in forward
WS_CLASSES = ('ConvWS2d', 'ConvAWS2d', 'StdConv2d', 'StdConv2dSame',
              'ScaledStdConv2d', 'ScaledStdConv2dSame')
#: torch's own forwards: they use ``self.weight`` as it is
_PLAIN_FORWARDS = {
    cls: (cls.forward, getattr(cls, '_conv_forward', None))
    for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
}


@torch.no_grad()
def _standardises_weight(module: nn.Module,
                         x: Optional[torch.Tensor]) -> Optional[Verdict]:
    """The ``ws`` verdict on ``module``'s weight when the layer standardises
    it (invariant to a per-channel scale and shift), or None when it does
    not.

    Structural first: a known WS class (:data:`WS_CLASSES`, by name, so that
    neither mmcv nor timm is imported) is; a layer running torch's own
    ``forward`` (plain ``Conv2d`` / ``Linear``) is not. Any other forward is
    probed on the weight's contribution alone: with the bias removed, in
    float64, on the recorded input, the output must not change (1e-3 of its
    norm) when each output channel of the weight is scaled by a factor in
    [0.5, 2] and shifted. Without a bias and linear in the input, the test
    does not depend on the size of the input or of the bias; a zero
    contribution tells nothing and counts as not invariant.
    """
    w = module.weight
    if w.dim() < 3:
        return None
    names = [c.__name__ for c in type(module).__mro__]
    known = next((n for n in names if n in WS_CLASSES), None)
    if known is not None:
        return Verdict(
            'ws', w.shape[0], Reason.STANDARDISED_CLASS,
            f'{type(module).__name__} ({known}) standardises its weight: '
            'invariant to per-channel scale and shift',
            **_ws_eps_errors(module))
    base = next((c for c in type(module).__mro__ if c in _PLAIN_FORWARDS),
                None)
    if base is not None and (type(module).forward,
                             getattr(type(module), '_conv_forward',
                                     None)) == _PLAIN_FORWARDS[base]:
        return None  # a plain layer: its weight is used as it is
    if x is not None and _probe_standardises(module, x):
        return Verdict(
            'ws', w.shape[0], Reason.STANDARDISED_PROBE,
            f'{type(module).__name__} standardises its weight (probe on '
            'the weight\'s contribution): invariant to per-channel scale '
            'and shift', **_ws_eps_errors(module))
    return None


def _probe_standardises(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module``'s output (bias zeroed, float64, on ``x``) stays
    within 1e-3 of its norm when each output channel of its weight is scaled
    by a factor in [0.5, 2] and shifted; False when the forward fails or its
    output is zero or not finite."""
    w = module.weight
    gen = torch.Generator().manual_seed(0)
    shape = (w.shape[0], ) + (1, ) * (w.dim() - 1)
    w64 = w.detach().double()
    scale = torch.empty(
        shape, dtype=torch.float64).uniform_(
            0.5, 2, generator=gen).to(w.device)
    shift = torch.empty(
        shape, dtype=torch.float64).uniform_(
            -1, 1, generator=gen).to(w.device)
    params = {n: p.detach().double() for n, p in module.named_parameters()}
    buffers = {
        n: b.detach().double() if b.is_floating_point() else b
        for n, b in module.named_buffers()
    }
    if params.get('bias') is not None:
        params['bias'] = torch.zeros_like(params['bias'])
    state = dict(params, **buffers)
    xs = x.detach().double()
    try:
        # functional_call: the module's own tensors are left untouched, so
        # this is safe inside a real training step
        y0 = functional_call(module, state, (xs, ))
        state['weight'] = w64 * scale + shift * w64.std()
        y1 = functional_call(module, state, (xs, ))
    except (RuntimeError, TypeError):  # e.g. a forward that needs its dtype
        return False
    ref = y0.norm()
    if not torch.isfinite(ref) or ref == 0:
        return False
    return bool((y1 - y0).norm() <= 1e-3 * ref)


def classify(model: nn.Module, loss_roots,
             rec: InvarianceRecorder) -> InvarianceReport:
    """Classify every parameter of ``model`` from a recorded forward whose
    output tensors (losses) are ``loss_roots``."""
    consumers = _consumers([t.grad_fn for t in loss_roots])
    owners = {
        id(p): m
        for m in model.modules()
        for p in m.parameters(recurse=False)
    }
    params = {id(p): p for p in model.parameters()}
    verdicts: Dict[int, Verdict] = {}
    for pid, calls in rec.op_calls.items():
        if params[pid].requires_grad:
            verdicts[pid] = _classify_op(params[pid], owners.get(pid), calls,
                                         consumers, rec)
    for module, calls in rec.layer_calls.items():
        w = getattr(module, 'weight', None)
        if not isinstance(
                w, nn.Parameter) or not w.requires_grad or id(w) in verdicts:
            continue
        verdicts[id(w)] = _classify_layer(module, calls, consumers, rec)
    report = InvarianceReport()
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if not p.requires_grad:
            v = Verdict.refused(Reason.FROZEN, 'frozen (requires_grad=False)')
        elif p.dim() < 2:
            v = Verdict.refused(Reason.ONE_DIM,
                                '1-D parameter (bias, norm affine or scale)')
        elif id(p) in verdicts:
            v = verdicts[id(p)]
        else:
            v = Verdict.refused(Reason.NOT_A_LAYER, _NOT_A_LAYER)
        report[name] = ParamInvariance.of(name, shape, v)
    return report


def _classify_op(w, module, calls, consumers, rec) -> Verdict:
    """A weight passed as it is to conv / linear ops (``calls``: the
    recorded ``(output node, transposed, has bias)``)."""
    used = [c for c in calls if c[0] in consumers]
    if not used:
        return Verdict.refused(Reason.UNUSED, _UNUSED)
    if any(transposed for _, transposed, _ in used):
        what = type(module).__name__ if module is not None else 'a ' \
            'transposed conv'
        return Verdict.refused(
            Reason.TRANSPOSED,
            f'{what}: output channels are not dim 0 of the weight')
    return _classify_outputs(w, [node for node, _, _ in used],
                             any(bias for _, _, bias in used), consumers, rec)


def _classify_layer(module, calls, consumers, rec) -> Verdict:
    """A Conv / Linear module whose weight reaches its op transformed (weight
    standardisation, a custom op): judged on the module's output."""
    used = [(node, x) for node, x in calls if node in consumers]
    if not used:
        return Verdict.refused(Reason.UNUSED, _UNUSED)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return Verdict.refused(
            Reason.TRANSPOSED, f'{type(module).__name__}: output channels '
            'are not dim 0 of the weight')
    ws = _standardises_weight(module, used[0][1])
    if ws is not None:
        return ws
    return _classify_outputs(module.weight, [node for node, _ in used],
                             getattr(module, 'bias', None) is not None,
                             consumers, rec)


def _classify_outputs(w, nodes, has_bias: bool, consumers, rec) -> Verdict:
    """The verdict on ``w`` from the uses (autograd ``nodes``) of the
    output it produces."""
    channels = w.shape[0]
    rows, norms, calls_seen = channels, [], []
    for node in nodes:
        for consumer, calls in _readers(node, consumers, rec):
            if calls is None:
                return Verdict.refused(
                    Reason.NOT_ONLY_NORMALISED, f'output consumed by '
                    f'{type(consumer).__name__}, not only by a '
                    'normalisation')
            for call in calls:
                if not call.batch_stats:
                    return _frozen_stats(call)
                if call.needs_no_bias and has_bias:
                    return Verdict.refused(
                        Reason.BIAS_BEFORE_NORM, f"bias added before "
                        f"{call.cls} '{call.module}' breaks the invariance")
                rows = math.gcd(rows, call.rows(channels))
                norms.append(f"{call.cls} '{call.module}'")
                calls_seen.append(call)
    return Verdict(
        granularity_of(rows, channels), rows, Reason.NORMALISED,
        'output normalised only by ' + ', '.join(sorted(set(norms))),
        **_norm_eps_errors(w, rows, calls_seen))


def _frozen_stats(call: _NormCall) -> Verdict:
    """A weight followed by the normalisation ``call`` that does not use
    batch statistics."""
    if call.cls in FROZEN_NORMS:
        return Verdict.refused(
            Reason.FROZEN_NORM, f"followed by {call.cls} '{call.module}', "
            "whose statistics are frozen (e.g. Detectron2's FrozenBN)")
    return Verdict.refused(
        Reason.EVAL_NORM, f"followed by {call.cls} '{call.module}' in eval "
        'mode (frozen running statistics, e.g. norm_eval=True)')


def _readers(node, consumers, rec) -> list:
    """``[(consumer, normalisation calls)]`` for each (dtype casts skipped)
    consumer of ``node``: the call whose output it is, or the calls of
    ``node`` that every path from it to the loss passes through (a
    normalisation written as several ops); None when a path avoids them."""
    out, stops = [], None
    for c in _effective(node, consumers):
        call = rec.norm_calls.get(c)
        if call is not None:
            out.append((c, [call]))
            continue
        if stops is None:
            sources = {node} | _pass_through(node, consumers)
            stops = {
                n: k
                for n, k in rec.norm_calls.items() if k.source in sources
            }
        out.append((c, _dominating(c, consumers, stops)))
    return out


def _pass_through(node, consumers) -> set:
    """The dtype casts of ``node``'s output, transitively."""
    out = set()
    for c in consumers.get(node, ()):
        if type(c).__name__ in _PASS_THROUGH:
            out |= {c} | _pass_through(c, consumers)
    return out


def _dominating(start, consumers, stops: dict, budget: int = 1024):
    """The ``stops`` (normalisation outputs) that every path from ``start``
    to the loss reaches, or None when one reaches the loss without them (or
    the search exceeds ``budget`` nodes)."""
    if not stops:
        return None
    reached, seen, stack = [], set(), [start]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in stops:
            reached.append(stops[n])
            continue
        nxt = consumers.get(n)
        if not nxt or len(seen) > budget:
            return None
        stack.extend(nxt)
    return reached


def _row_norms(w: torch.Tensor, rows: int) -> torch.Tensor:
    """Each channel's row norm (a group's norm repeated over its channels)."""
    n = w.detach().float().reshape(rows, -1).norm(dim=1)
    return n.repeat_interleave(w.shape[0] // rows)


@torch.no_grad()
def _norm_eps_errors(w: torch.Tensor, rows: int, calls: list) -> dict:
    """``eps_error`` / ``rescale_change`` (see :class:`ParamInvariance`) of a
    weight followed by the normalisations ``calls``."""
    out = dict(norms=tuple(sorted({c.module for c in calls})))
    eps_err, change = [], []
    for call in calls:
        var = call.var
        if call.eps is None or var is None or var.numel() not in (1,
                                                                  w.shape[0]):
            return out
        s2 = _row_norms(w, rows).to(var.device)**2
        eps_err.append((call.eps / (var + call.eps)).max())
        change.append(((var + call.eps) /
                       (var + s2 * call.eps)).sqrt().sub(1).abs().max())
    if eps_err:
        out.update(
            eps_error=float(torch.stack(eps_err).max()),
            rescale_change=float(torch.stack(change).max()))
    return out


@torch.no_grad()
def _ws_eps_errors(module: nn.Module) -> dict:
    """The same for a weight-standardised layer that exposes its ``eps``
    (``(w - mean) / (std + eps)``, unbiased std as mmcv ``ConvWS2d``)."""
    eps = getattr(module, 'eps', None)
    if not isinstance(eps, float):
        return {}
    w = module.weight.detach().float().flatten(1)
    std, s = w.std(1), w.norm(dim=1)
    return dict(
        eps_error=float((eps / (std + eps)).max()),
        rescale_change=float(((std + eps) / (std + s * eps) - 1).abs().max()))


def _snapshot_buffers(model: nn.Module):
    return [(b, b.detach().clone()) for b in model.buffers()]


def _restore_buffers(snapshot) -> None:
    with torch.no_grad():
        for b, saved in snapshot:
            b.copy_(saved)


def analyze_invariance(model: nn.Module,
                       forward: Callable[[], object]) -> InvarianceReport:
    """Classify every parameter of ``model`` from one real training forward.

    Args:
        model: the model, in the mode it trains in (``model.train()`` has been
            called; mmdet's ``norm_eval`` is applied by ``train()``).
        forward: runs one training forward and returns the loss (a tensor, or a
            dict / list of tensors).

    Buffers (BatchNorm running statistics) are restored afterwards; no
    gradient is computed.
    """
    snapshot = _snapshot_buffers(model)
    try:
        with InvarianceRecorder(model) as rec:
            out = forward()
        return classify(model, loss_tensors(out), rec)
    finally:
        _restore_buffers(snapshot)


def loss_tensors(out) -> List[torch.Tensor]:
    """The tensors with autograd history in a (nested) loss output."""
    if isinstance(out, torch.Tensor):
        return [out] if out.grad_fn is not None else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in loss_tensors(o)]
    return []
