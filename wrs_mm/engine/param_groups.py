"""What wrs_mm's features agree on through the optimizer's param groups.

A weight that WRS rescales or the shifted regularizer penalises loses its
weight decay: its group gets ``weight_decay=0`` and two keys (saved with the
optimizer state, so a resumed run keeps them):

* :data:`ROLE`: which feature owns the group (:data:`ROLE_WRS` or
  :data:`ROLE_SHIFTED`); a weight has at most one;
* :data:`CONFIGURED_DECAY`: the decay the config gave it (the shifted
  regularizer's default lambda).

Groups can only be claimed whole: ``WRSOptimWrapperConstructor`` builds one
group per parameter.
"""
from typing import Dict

import torch

ROLE = 'wrs_mm_role'
CONFIGURED_DECAY = 'wrs_mm_configured_decay'
ROLE_WRS = 'wrs'
ROLE_SHIFTED = 'shifted_lp'


def group_index(optimizer: torch.optim.Optimizer) -> Dict[int, dict]:
    """``{id(param): its param group}``."""
    return {id(p): g for g in optimizer.param_groups for p in g['params']}


def claim_groups(optimizer: torch.optim.Optimizer, params: Dict[str,
                                                                torch.Tensor],
                 role: str, owner: str) -> Dict[str, dict]:
    """Set ``weight_decay=0`` on the groups of ``params`` (``{name:
    param}``) and tag them with ``role``; return ``{name: group}``. Each group
    must hold only such params (else another parameter would lose its decay)
    and must not be claimed by another role; ``owner`` (the config key) is
    named in the errors. Nothing is changed when one group fails."""
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
        if g.get(ROLE, role) != role:
            raise ValueError(
                f'{owner}: parameter {name!r} is already handled by '
                f'{g[ROLE]!r}; exclude it from one of the two.')
        groups[name] = g
    for g in groups.values():
        g.setdefault(CONFIGURED_DECAY, g.get('weight_decay', 0.))
        g['weight_decay'] = 0.
        g[ROLE] = role
    return groups


def groups_summary(optimizer: torch.optim.Optimizer) -> str:
    """Param groups aggregated by (role, weight decay, lr), as a table."""
    agg: Dict[tuple, list] = {}
    for g in optimizer.param_groups:
        key = (g.get(ROLE, '-'), g.get('weight_decay', 0.), g['lr'])
        a = agg.setdefault(key, [0, 0])
        a[0] += len(g['params'])
        a[1] += sum(p.numel() for p in g['params'])
    lines = ['role        weight_decay  lr          params  elements']
    for (role, wd, lr), (n, e) in sorted(agg.items(), key=str):
        lines.append(f'{role:<11} {wd:<13g} {lr:<11g} {n:<7d} {e}')
    return '\n'.join(lines)
