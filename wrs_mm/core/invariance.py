"""Which weights is the training loss invariant to rescaling, and how?

Liu et al. (Sec. 3) and Li et al. (Sec. 3): a weight vector feeding a
normalisation that uses batch statistics can be rescaled without changing the
network function. This module finds such weights by following the data of one
real training forward, not module names:

* every Conv / Linear call is recorded with the autograd node of its output, and
  every normalisation call with its output node and whether it normalises with
  batch statistics;
* the autograd graph of the loss is walked backwards to list, for each node,
  the nodes that consume it;
* a weight is invariant when *every* consumer of *every* use of its layer's
  output is a normalisation using batch statistics (a dtype cast in between is
  transparent): BatchNorm / SyncBatchNorm / InstanceNorm give per-channel
  invariance (a bias is allowed, the channel mean removes it), GroupNorm per
  group of channels, LayerNorm the whole tensor (both require no bias);
* a layer that standardises its own weight (mmcv ``ConvWS2d``, ``ConvAWS2d``,
  timm ``StdConv2d``) is recognised by a probe on its recorded input: its output
  does not change when each output channel is scaled and shifted.

Frozen normalisation (``eval()`` / mmdet ``norm_eval=True``) uses running
statistics and is *not* invariant. :func:`verify_invariance` checks the result
numerically on the loss itself.
"""
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

KINDS = ('channel', 'group', 'tensor', 'ws', 'none')
_PRODUCERS = (nn.modules.conv._ConvNd, nn.Linear)
_PASS_THROUGH = ('ToCopyBackward0', )
_UNUSED = 'output does not reach the loss (unused, or no autograd history)'
_NOT_A_LAYER = ('not the weight of a Conv/Linear layer called in the '
                'training forward')
_NOT_USED = (_UNUSED, _NOT_A_LAYER)


def granularity_of(rows: int, channels: int) -> str:
    """``tensor`` (1 row), ``channel`` (one per output channel) or
    ``group``."""
    if rows == 1:
        return 'tensor'
    return 'channel' if rows == channels else 'group'


@dataclass
class ParamInvariance:
    """The verdict on one parameter.

    ``kind`` is one of ``channel`` (per output channel), ``group`` (per group of
    channels, GroupNorm), ``tensor`` (whole tensor, LayerNorm), ``ws`` (per
    channel scale *and* shift, weight standardisation) or ``none``. ``rows`` is
    the number of independent weight vectors (0 when not invariant).
    """
    name: str
    shape: tuple
    kind: str
    rows: int
    reason: str
    in_graph: bool = True  # whether the weight influences the loss at all

    @property
    def invariant(self) -> bool:
        return self.kind != 'none'

    @property
    def granularity(self) -> Optional[str]:
        return granularity_of(self.rows, self.shape[0]) if self.invariant \
            else None


class InvarianceReport(dict):
    """``{param name: ParamInvariance}`` in ``model.named_parameters()`` order."""

    def invariant(self) -> List[ParamInvariance]:
        return [v for v in self.values() if v.invariant]

    def candidates(self) -> List[ParamInvariance]:
        """Trainable weights of 2 or more dims (what WRS could act on)."""
        return [v for v in self.values() if len(v.shape) >= 2
                and not v.reason.startswith('frozen')]

    def to_json(self) -> List[dict]:
        return [dict(asdict(v), granularity=v.granularity)
                for v in self.values()]

    def table(self, params: Optional[List[ParamInvariance]] = None) -> str:
        rows = [('parameter', 'shape', 'class', 'granularity', 'reason')]
        for v in params if params is not None else self.values():
            rows.append((v.name, 'x'.join(map(str, v.shape)), v.kind,
                         v.granularity or '-', v.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths)) +
                         '  ' + r[4] for r in rows)


@dataclass
class _NormCall:
    module: str
    cls: str
    batch_stats: bool
    rows: Callable[[int], int]  # output channels -> invariant rows
    needs_no_bias: bool


class InvarianceRecorder:
    """Records layer and normalisation calls while active (a context manager).

    Hooks are global module hooks installed only inside the ``with`` block, so
    nothing is left on the model (safe for ``deepcopy``, EMA copies, DDP).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {m: n for n, m in model.named_modules()}
        self.layer_calls: Dict[nn.Module, list] = defaultdict(list)
        self.norm_calls: Dict[object, _NormCall] = {}
        self._handle = None

    def __enter__(self):
        self._handle = nn.modules.module.register_module_forward_hook(
            self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    def _hook(self, module, inputs, output):
        if module not in self.names or not isinstance(output, torch.Tensor):
            return
        node = output.grad_fn
        if isinstance(module, _PRODUCERS):
            x = inputs[0] if inputs and isinstance(inputs[0],
                                                   torch.Tensor) else None
            self.layer_calls[module].append(
                (node, None if x is None else x[:1].detach()))
        elif node is not None:
            call = _norm_call(module, self.names[module])
            if call is not None:
                self.norm_calls[node] = call


def _norm_call(m: nn.Module, name: str) -> Optional[_NormCall]:
    cls = type(m).__name__
    if isinstance(m, _BatchNorm):
        stats = m.training or not m.track_running_stats or m.running_mean is None
        return _NormCall(name, cls, stats, lambda c: c, False)
    if isinstance(m, _InstanceNorm):
        stats = m.training or not m.track_running_stats
        return _NormCall(name, cls, stats, lambda c: c, False)
    if isinstance(m, nn.GroupNorm):
        g = m.num_groups
        return _NormCall(name, f'{cls}({g} groups)', True,
                         lambda c: g if c % g == 0 else 1, True)
    if isinstance(m, nn.LayerNorm):
        return _NormCall(name, cls, True, lambda c: 1, True)
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


@torch.no_grad()
def _standardises_weight(module: nn.Module, x: torch.Tensor) -> bool:
    """Probe: is ``module(x)`` unchanged when each output channel of its weight
    is scaled by a factor in [0.5, 2] and shifted by a constant?"""
    w = module.weight
    if w.dim() < 3 or x is None:
        return False
    gen = torch.Generator().manual_seed(0)
    shape = (w.shape[0], ) + (1, ) * (w.dim() - 1)
    scale = torch.empty(shape).uniform_(0.5, 2, generator=gen).to(w)
    shift = torch.empty(shape).uniform_(-1, 1, generator=gen).to(w)
    # functional_call: the parameter itself (and its autograd version) is
    # left untouched, so this is safe inside a real training step
    y0 = module(x)
    y1 = functional_call(module, {'weight': w * scale + shift * w.std()},
                         (x, ))
    return bool((y1 - y0).norm() <= 1e-2 * y0.norm())


def classify(model: nn.Module, loss_roots, rec: InvarianceRecorder
             ) -> InvarianceReport:
    """Classify every parameter of ``model`` from a recorded forward whose
    output tensors (losses) are ``loss_roots``."""
    consumers = _consumers([t.grad_fn for t in loss_roots])
    verdicts: Dict[int, tuple] = {}
    for module, calls in rec.layer_calls.items():
        w = getattr(module, 'weight', None)
        if not isinstance(w, nn.Parameter) or not w.requires_grad:
            continue
        verdicts[id(w)] = _classify_layer(module, rec.names[module], calls,
                                          consumers, rec)
    report = InvarianceReport()
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if not p.requires_grad:
            v = ('none', 0, 'frozen (requires_grad=False)')
        elif p.dim() < 2:
            v = ('none', 0, '1-D parameter (bias, norm affine or scale)')
        else:
            v = verdicts.get(id(p), ('none', 0, _NOT_A_LAYER))
        report[name] = ParamInvariance(name, shape, *v,
                                       in_graph=v[2] not in _NOT_USED)
    return report


def _classify_layer(module, name, calls, consumers, rec) -> tuple:
    used = [(node, x) for node, x in calls if node in consumers]
    if not used:
        return ('none', 0, _UNUSED)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return ('none', 0, f'{type(module).__name__}: output channels are not '
                'dim 0 of the weight')
    if _standardises_weight(module, used[0][1]):
        return ('ws', module.weight.shape[0],
                f'{type(module).__name__} standardises its weight: invariant '
                'to per-channel scale and shift')
    channels = module.weight.shape[0]
    rows, norms = channels, []
    for node, _ in used:
        for c in _effective(node, consumers):
            call = rec.norm_calls.get(c)
            if call is None:
                return ('none', 0, f'output consumed by {type(c).__name__}, '
                        'not only by a normalisation')
            if not call.batch_stats:
                return ('none', 0, f"followed by {call.cls} '{call.module}' in "
                        'eval mode (frozen running statistics, e.g. '
                        'norm_eval=True)')
            if call.needs_no_bias and getattr(module, 'bias', None) is not None:
                return ('none', 0, f"bias added before {call.cls} "
                        f"'{call.module}' breaks the invariance")
            rows = math.gcd(rows, call.rows(channels))
            norms.append(f"{call.cls} '{call.module}'")
    kind = 'channel' if rows == channels else 'tensor' if rows == 1 else 'group'
    return (kind, rows, 'output normalised only by ' +
            ', '.join(sorted(set(norms))))


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
