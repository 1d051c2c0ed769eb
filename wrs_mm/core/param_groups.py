"""The param-group layout wrs_mm's features agree on, whichever framework
built the optimizer (mmengine's ``WRSOptimWrapperConstructor``, Detectron2's
``get_wrs_optimizer_params``).

Parameters of equal settings share one group (a *settings class*); each
class that holds a weight the features could act on (trainable, >= 2 dims)
also has one empty group per wrs_mm role: the class's settings with
``weight_decay=0`` (:func:`add_role_groups`). The first forward's analysis
moves each chosen weight into its class's group of that role
(:func:`claim_groups`), so the number of groups never changes once the
optimizer is built (LR schedulers keep one value per group).

Keys a group may carry (saved with the optimizer state):

* :data:`CLASS`: the settings class (main group and role groups share it);
* :data:`ROLE`: which feature owns the group (:data:`ROLE_WRS` or
  :data:`ROLE_SHIFTED`); a weight has at most one;
* :data:`CONFIGURED_DECAY`: the decay the config gave the class (the shifted
  regularizer's default lambda).

A group without :data:`CLASS` (a framework's default optimizer) is claimed
in place, and only whole.
"""
from typing import Dict, List, Sequence

import torch

ROLE = 'wrs_mm_role'
CONFIGURED_DECAY = 'wrs_mm_configured_decay'
CLASS = 'wrs_mm_class'
ROLE_WRS = 'wrs'
ROLE_SHIFTED = 'shifted_lp'
#: how a plain-PyTorch user gets the role groups (adapters name their own)
CORE_FIX = ('Build the param groups with '
            'wrs_mm.core.param_groups.add_role_groups.')


def group_index(optimizer: torch.optim.Optimizer) -> Dict[int, dict]:
    """``{id(param): its param group}``."""
    return {id(p): g for g in optimizer.param_groups for p in g['params']}


def settings_of(group: dict) -> dict:
    """A group's settings: everything but ``params``."""
    return {k: v for k, v in group.items() if k != 'params'}


def same_settings(a: dict, b: dict) -> bool:
    """Equal settings (a tensor value, e.g. a tensor lr, only to itself)."""
    return a.keys() == b.keys() and all(
        a[k] is b[k] or not isinstance(a[k], torch.Tensor)
        and not isinstance(b[k], torch.Tensor) and a[k] == b[k] for k in a)


def add_role_groups(groups: List[dict], roles: Sequence[str]) -> List[dict]:
    """``groups`` (one per settings class, no role yet) tagged with their
    :data:`CLASS`, followed by an empty group per role in ``roles`` for each
    class with a trainable weight of >= 2 dims."""
    out = [dict(g, **{CLASS: i}) for i, g in enumerate(groups)]
    for i, g in enumerate(groups):
        if any(p.requires_grad and p.dim() >= 2 for p in g['params']):
            decay = g.get('weight_decay')  # None: the optimizer's default
            out += [
                dict(
                    settings_of(g),
                    params=[],
                    weight_decay=0.,
                    **{
                        CLASS: i,
                        ROLE: role,
                        CONFIGURED_DECAY: decay
                    }) for role in roles
            ]
    return out


def claim_groups(optimizer: torch.optim.Optimizer,
                 params: Dict[str, torch.Tensor],
                 role: str,
                 owner: str,
                 fix: str = CORE_FIX) -> Dict[str, dict]:
    """Take the weight decay off ``params`` (``{name: param}``) for the
    feature ``role``; return ``{name: its group}``. A parameter moves into its
    settings class's group of that role; one already there (a resumed run)
    stays. A group without :data:`CLASS` (mmengine's default constructor) is
    claimed in place (``weight_decay=0`` and the role set), which it must be
    whole: else another parameter would lose its decay. A parameter owned by
    another role is an error; ``owner`` (the config key) is named in the
    errors, with ``fix`` (how the user's framework builds role groups) when
    a group cannot be claimed, and nothing changes when one fails. A role
    group built before the optimizer filled in its defaults takes its
    class's decay as :data:`CONFIGURED_DECAY`."""
    index = group_index(optimizer)
    ids = {id(p) for p in params.values()}
    moves, in_place = {}, {}
    for name, p in params.items():
        g = index.get(id(p))
        if g is None:
            raise ValueError(f'{owner}: parameter {name!r} is not in the '
                             'optimizer')
        if g.get(ROLE, role) != role:
            raise ValueError(
                f'{owner}: parameter {name!r} is already handled by '
                f'{g[ROLE]!r}; exclude it from one of the two.')
        if ROLE in g or CLASS not in g:
            if ROLE not in g and any(id(q) not in ids for q in g['params']):
                raise ValueError(
                    f'{owner}: parameter {name!r} shares an optimizer param '
                    'group with parameters that keep their weight decay, so '
                    f'its decay cannot be removed. {fix}')
            in_place[name] = g
        else:
            moves[name] = (g, _role_group(optimizer, g[CLASS], role, owner))
    for g in in_place.values():
        g.setdefault(CONFIGURED_DECAY, g.get('weight_decay', 0.))
        g['weight_decay'] = 0.
        g[ROLE] = role
    for name, (src, dst) in moves.items():
        if dst.get(CONFIGURED_DECAY) is None:
            dst[CONFIGURED_DECAY] = src.get('weight_decay', 0.)
        p = params[name]
        src['params'] = [q for q in src['params'] if q is not p]
        dst['params'].append(p)
    return dict(in_place, **{n: dst for n, (_, dst) in moves.items()})


def _role_group(optimizer, cls: int, role: str, owner: str) -> dict:
    for g in optimizer.param_groups:
        if g.get(CLASS) == cls and g.get(ROLE) == role:
            return g
    raise ValueError(f'{owner}: the optimizer has no param group for {role!r} '
                     'weights; it was built without that role')


def groups_summary(optimizer: torch.optim.Optimizer) -> str:
    """Param groups aggregated by (role, weight decay, lr), as a table."""
    agg: Dict[tuple, list] = {}
    for g in optimizer.param_groups:
        key = (g.get(ROLE, '-'), g.get('weight_decay', 0.), g['lr'])
        a = agg.setdefault(key, [0, 0, 0])
        a[0] += bool(g['params'])
        a[1] += len(g['params'])
        a[2] += sum(p.numel() for p in g['params'])
    lines = ['role        weight_decay  lr          groups  params  elements']
    for (role, wd, lr), (k, n, e) in sorted(agg.items(), key=str):
        lines.append(f'{role:<11} {wd:<13g} {lr:<11g} {k:<7d} {n:<7d} {e}')
    return '\n'.join(lines)
