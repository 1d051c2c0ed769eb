"""The optimizer's param groups as ``WRSOptimWrapperConstructor`` builds
them, and how its checkpoints name them.

``WRSOptimWrapperConstructor`` builds mmengine's groups (one per parameter,
each with its ``paramwise_cfg`` multipliers) and :func:`group_by_settings`
merges them into one group per *settings class* (parameters whose settings
are all equal), in the order of their first parameter, with the role groups
of :mod:`wrs_mm.core.param_groups`, which also names the keys a group may
carry. So a step runs the optimizer's multi-tensor ops once per non-empty
group (an empty one launches nothing), as with mmengine's default
constructor, and mmengine's param schedulers, which keep one value per group,
never see the number of groups change.

Checkpoints: the optimizer's ``state_dict`` also holds the parameter names
(:data:`NAMES`); on ``load_state_dict`` the optimizer first takes the
checkpoint's layout (:func:`adopt_saved_layout`), so a resumed run continues
with the groups, and the schedulers with the per-group values, it saved. A
checkpoint written before this layout (wrs_mm up to commit 7499571: one group
per parameter, no names) resumes with one group per parameter, as it was
trained.

With mmengine's default constructor (no class key), a group is claimed in
place, and only whole (as before this layout).
"""
from typing import Dict, List, Sequence

import torch
from mmengine.logging import print_log

from ..core.param_groups import add_role_groups, same_settings, settings_of

#: the state-dict key naming the parameters in the order of its indices
NAMES = 'wrs_mm_param_names'
#: how an mmengine user gets the role groups (named in ``claim_groups``' error)
MMENGINE_FIX = "Set optim_wrapper.constructor='WRSOptimWrapperConstructor'."


def group_by_settings(optimizer: torch.optim.Optimizer, names: Dict[int, str],
                      roles: Sequence[str]) -> None:
    """Regroup a freshly built ``optimizer`` (no state yet) into one group
    per settings class plus an empty group per role in ``roles`` for each
    class with a trainable weight of >= 2 dims
    (:func:`~wrs_mm.core.param_groups.add_role_groups`), and make its state
    dict carry the layout (``names``: ``{id(param): name}``; see the module
    doc)."""
    if optimizer.state:
        raise RuntimeError('group_by_settings: the optimizer has state '
                           'already; regroup it before the first step')
    build_order = [p for g in optimizer.param_groups for p in g['params']]
    classes: List[dict] = []
    for g in optimizer.param_groups:
        settings = settings_of(g)
        cls = next(
            (c for c in classes if same_settings(settings_of(c), settings)),
            None)
        if cls is None:
            cls = dict(settings, params=[])
            classes.append(cls)
        cls['params'] += g['params']
    optimizer.param_groups = add_role_groups(classes, roles)
    _save_layout(optimizer, names, [names[id(p)] for p in build_order])


def _save_layout(optimizer: torch.optim.Optimizer, names: Dict[int, str],
                 build_order: List[str]) -> None:
    """Name the parameters in ``optimizer.state_dict()`` (:data:`NAMES`, in
    the order of the saved indices) and adopt a checkpoint's layout on
    ``load_state_dict``."""

    def add_names(opt, state_dict):
        """``state_dict_post_hook``: name the saved parameters."""
        state_dict[NAMES] = [n for n, _ in _in_order(opt, names)]

    def adopt(opt, state_dict):
        """``load_state_dict_pre_hook``: take the saved layout."""
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
        dict(settings_of(g), params=[params[next(it)] for _ in g['params']])
        for g in saved
    ]


def _in_order(optimizer, names: Dict[int, str]) -> list:
    """``(name, param)`` in the order ``state_dict`` numbers them."""
    return [(names[id(p)], p) for g in optimizer.param_groups
            for p in g['params']]
