"""Name patterns and optimizer param groups shared by the WRS hook and the
shifted-Lp constructor."""
import re
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..core import InvarianceReport, ParamInvariance

Patterns = Optional[Union[str, Sequence[str]]]


def compile_patterns(value: Patterns, key: str) -> Optional[List[re.Pattern]]:
    """``value`` (a regex or a list of regexes, matched with ``re.search``
    against parameter names) compiled, or a clear error naming ``key``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value) or not value:
        raise TypeError(f'{key} must be a regex string or a non-empty list of '
                        f'them, got {value!r}')
    out = []
    for v in value:
        try:
            out.append(re.compile(v))
        except re.error as e:
            raise ValueError(f'{key}: invalid regex {v!r}: {e}') from None
    return out


def check_patterns_match(include, exclude, names: Sequence[str],
                         owner: str) -> None:
    """Raise if an ``include`` / ``exclude`` pattern matches no parameter
    name (a typo, usually)."""
    for key, patterns in (('include', include), ('exclude', exclude)):
        for p in patterns or ():
            if not any(p.search(n) for n in names):
                raise ValueError(
                    f'{owner}.{key}: pattern {p.pattern!r} matches no '
                    f'parameter of the model (e.g. {", ".join(names[:3])}, '
                    '...)')


def selected(name: str, include, exclude) -> bool:
    """Matched by ``include`` (all when None) and not by ``exclude``."""
    return (include is None or any(p.search(name) for p in include)) \
        and not any(p.search(name) for p in exclude or ())


def select(report: InvarianceReport, include, exclude, owner: str,
           allow_non_invariant: bool) -> List[ParamInvariance]:
    """Candidates (trainable weights of >= 2 dims) chosen by ``include`` (all
    when None) minus ``exclude``. A weight matched by an explicit ``include``
    that is not invariant raises, unless ``allow_non_invariant``."""
    chosen, bad = [], []
    for v in report.candidates():
        if not selected(v.name, include, exclude):
            continue
        if v.invariant:
            chosen.append(v)
        elif include is not None:
            bad.append(v)
    if bad and not allow_non_invariant:
        raise ValueError(
            f'{owner}: these weights are matched by `include` but are not '
            'scale-invariant, so acting on them would change the network '
            'function:\n' + report.table(bad) +
            '\nFix the pattern, or pass allow_non_invariant=True to force it.')
    return chosen + bad


def group_index(optimizer: torch.optim.Optimizer) -> Dict[int, dict]:
    return {id(p): g for g in optimizer.param_groups for p in g['params']}


def claim_groups(optimizer: torch.optim.Optimizer,
                 params: Dict[str, torch.Tensor], role: str,
                 owner: str) -> Dict[str, dict]:
    """Set ``weight_decay=0`` on the groups of ``params`` and tag them with
    ``role``; each group must hold only such params (else another parameter
    would lose its decay) and must not be claimed by another role."""
    index = group_index(optimizer)
    ids = {id(p) for p in params.values()}
    groups = {}
    for name, p in params.items():
        g = index.get(id(p))
        if g is None:
            raise ValueError(f'{owner}: parameter {name!r} is not in the '
                             'optimizer')
        if any(id(q) not in ids for q in g['params']):
            raise ValueError(
                f'{owner}: parameter {name!r} shares an optimizer param group '
                'with parameters that keep their weight decay, so its decay '
                "cannot be removed. Set optim_wrapper.constructor="
                "'WRSOptimWrapperConstructor' (one group per parameter).")
        if g.get('wrs_mm', role) != role:
            raise ValueError(
                f"{owner}: parameter {name!r} is already handled by "
                f"{g['wrs_mm']!r}; exclude it from one of the two.")
        g.setdefault('decay_cfg', g.get('weight_decay', 0.))
        g['weight_decay'] = 0.
        g['wrs_mm'] = role
        groups[name] = g
    return groups


def groups_summary(optimizer: torch.optim.Optimizer) -> str:
    """Param groups aggregated by (role, weight decay, lr)."""
    agg: Dict[tuple, list] = {}
    for g in optimizer.param_groups:
        key = (g.get('wrs_mm', '-'), g.get('weight_decay', 0.), g['lr'])
        a = agg.setdefault(key, [0, 0])
        a[0] += len(g['params'])
        a[1] += sum(p.numel() for p in g['params'])
    lines = ['role        weight_decay  lr          params  elements']
    for (role, wd, lr), (n, e) in sorted(agg.items(), key=str):
        lines.append(f'{role:<11} {wd:<13g} {lr:<11g} {n:<7d} {e}')
    return '\n'.join(lines)

