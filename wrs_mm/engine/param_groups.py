"""The optimizer's param groups as wrs_mm lays them out, and what its
features agree on through them.

``WRSOptimWrapperConstructor`` builds mmengine's groups (one per parameter,
each with its ``paramwise_cfg`` multipliers) and :func:`group_by_settings`
merges them into one group per *settings class* (parameters whose settings
are all equal), in the order of their first parameter, then adds, for each
class that holds a weight the features could act on (trainable, >= 2 dims),
one empty group per wrs_mm role: the class's settings with
``weight_decay=0``. The first forward's analysis moves each chosen weight
into its class's group of that role (:func:`claim_groups`). So a step runs
the optimizer's multi-tensor ops once per non-empty group (an empty one
launches nothing), as with mmengine's default constructor, and the number of
groups is fixed when the optimizer is built: mmengine's param schedulers keep
one value per group and never see it change.

Keys a group may carry (saved with the optimizer state):

* :data:`CLASS`: the settings class (main group and role groups share it);
* :data:`ROLE`: which feature owns the group (:data:`ROLE_WRS` or
  :data:`ROLE_SHIFTED`); a weight has at most one;
* :data:`CONFIGURED_DECAY`: the decay the config gave the class (the shifted
  regularizer's default lambda).

Checkpoints: the optimizer's ``state_dict`` also holds the parameter names
(:data:`NAMES`); on ``load_state_dict`` the optimizer first takes the
checkpoint's layout (:func:`adopt_saved_layout`), so a resumed run continues
with the groups, and the schedulers with the per-group values, it saved. A
checkpoint written before this layout (wrs_mm up to commit 7499571: one group
per parameter, no names) resumes with one group per parameter, as it was
trained.

With mmengine's default constructor (no :data:`CLASS`), a group is claimed
in place, and only whole (as before this layout).
"""
from typing import Dict, List, Sequence

import torch
from mmengine.logging import print_log

ROLE = 'wrs_mm_role'
CONFIGURED_DECAY = 'wrs_mm_configured_decay'
CLASS = 'wrs_mm_class'
NAMES = 'wrs_mm_param_names'
ROLE_WRS = 'wrs'
ROLE_SHIFTED = 'shifted_lp'


def group_index(optimizer: torch.optim.Optimizer) -> Dict[int, dict]:
    """``{id(param): its param group}``."""
    return {id(p): g for g in optimizer.param_groups for p in g['params']}


def _settings(group: dict) -> dict:
    return {k: v for k, v in group.items() if k != 'params'}


def _same(a: dict, b: dict) -> bool:
    """Equal settings (a tensor value, e.g. a tensor lr, only to itself)."""
    return a.keys() == b.keys() and all(
        a[k] is b[k] or not isinstance(a[k], torch.Tensor)
        and not isinstance(b[k], torch.Tensor) and a[k] == b[k] for k in a)


def group_by_settings(optimizer: torch.optim.Optimizer, names: Dict[int, str],
                      roles: Sequence[str]) -> None:
    """Regroup a freshly built ``optimizer`` (no state yet) into one group
    per settings class plus an empty group per role in ``roles`` for each
    class with a trainable weight of >= 2 dims, and make its state dict
    carry the layout (``names``: ``{id(param): name}``; see the module
    doc)."""
    if optimizer.state:
        raise RuntimeError('group_by_settings: the optimizer has state '
                           'already; regroup it before the first step')
    build_order = [p for g in optimizer.param_groups for p in g['params']]
    classes: List[dict] = []
    for g in optimizer.param_groups:
        settings = _settings(g)
        cls = next((c for c in classes if _same(c['settings'], settings)),
                   None)
        if cls is None:
            cls = dict(settings=settings, params=[])
            classes.append(cls)
        cls['params'] += g['params']
    groups = [
        dict(c['settings'], params=c['params'], **{CLASS: i})
        for i, c in enumerate(classes)
    ]
    for i, c in enumerate(classes):
        if any(p.requires_grad and p.dim() >= 2 for p in c['params']):
            decay = c['settings'].get('weight_decay', 0.)
            groups += [
                dict(
                    c['settings'],
                    params=[],
                    weight_decay=0.,
                    **{
                        CLASS: i,
                        ROLE: role,
                        CONFIGURED_DECAY: decay
                    }) for role in roles
            ]
    optimizer.param_groups = groups
    _save_layout(optimizer, names, [names[id(p)] for p in build_order])


def _save_layout(optimizer: torch.optim.Optimizer, names: Dict[int, str],
                 build_order: List[str]) -> None:
    """Name the parameters in ``optimizer.state_dict()`` (:data:`NAMES`, in
    the order of the saved indices) and adopt a checkpoint's layout on
    ``load_state_dict``."""

    def add_names(opt, state_dict):
        state_dict[NAMES] = [n for n, _ in _in_order(opt, names)]

    def adopt(opt, state_dict):
        adopt_saved_layout(opt, state_dict, names, build_order)

    optimizer.register_state_dict_post_hook(add_names)
    optimizer.register_load_state_dict_pre_hook(adopt)


def adopt_saved_layout(optimizer: torch.optim.Optimizer, state_dict: dict,
                       names: Dict[int, str], build_order: List[str]) -> None:
    """Give ``optimizer`` the groups of ``state_dict`` (its parameters in the
    saved groups and order; the settings are then loaded as saved), so that
    torch's ``load_state_dict`` maps every saved state to its parameter. A
    state dict without :data:`NAMES` must hold one group per parameter in the
    constructor's order (a checkpoint written before this layout); anything
    else raises ``ValueError``. Pops :data:`NAMES` from ``state_dict``."""
    saved = state_dict['param_groups']
    saved_names = state_dict.pop(NAMES, None)
    if saved_names is None:
        if len(saved) != len(build_order) or any(
                len(g['params']) != 1 for g in saved):
            raise ValueError(
                'The optimizer state to load has no parameter names '
                f'({NAMES!r}) and is not one param group per parameter '
                f'({len(saved)} groups for {len(build_order)} parameters): it '
                "was not written by WRSOptimWrapperConstructor's optimizer "
                'for this model; resume it with the constructor it was '
                'trained with')
        saved_names = build_order
        print_log(
            'wrs_mm: the checkpoint has one optimizer param group per '
            f'parameter ({len(saved)}, written by wrs_mm before param groups '
            'were merged by settings); this run keeps that layout. A new run '
            'merges them.',
            logger='current',
            level=30)
    params = dict(_in_order(optimizer, names))
    missing = sorted(set(params) - set(saved_names))
    unknown = sorted(set(saved_names) - set(params))
    if missing or unknown or len(saved_names) != len(params):
        raise ValueError(
            'The optimizer state to load does not hold the parameters of '
            f'this optimizer: not in it: {missing[:5]}, not in this model: '
            f'{unknown[:5]}')
    it = iter(saved_names)
    optimizer.param_groups = [
        dict(_settings(g), params=[params[next(it)] for _ in g['params']])
        for g in saved
    ]


def _in_order(optimizer, names: Dict[int, str]) -> list:
    """``(name, param)`` in the order ``state_dict`` numbers them."""
    return [(names[id(p)], p) for g in optimizer.param_groups
            for p in g['params']]


def claim_groups(optimizer: torch.optim.Optimizer, params: Dict[str,
                                                                torch.Tensor],
                 role: str, owner: str) -> Dict[str, dict]:
    """Take the weight decay off ``params`` (``{name: param}``) for the
    feature ``role``; return ``{name: its group}``. A parameter moves into its
    settings class's group of that role; one already there (a resumed run)
    stays. A group without :data:`CLASS` (mmengine's default constructor) is
    claimed in place (``weight_decay=0`` and the role set), which it must be
    whole: else another parameter would lose its decay. A parameter owned by
    another role is an error; ``owner`` (the config key) is named in the
    errors, and nothing changes when one fails."""
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
                    'its decay cannot be removed. Set '
                    "optim_wrapper.constructor='WRSOptimWrapperConstructor'.")
            in_place[name] = g
        else:
            moves[name] = (g, _role_group(optimizer, g[CLASS], role, owner))
    for g in in_place.values():
        g.setdefault(CONFIGURED_DECAY, g.get('weight_decay', 0.))
        g['weight_decay'] = 0.
        g[ROLE] = role
    for name, (src, dst) in moves.items():
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
