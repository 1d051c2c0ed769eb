"""What tests read from an mmengine runner, and what they give one."""
import uuid
from typing import Dict, Type

from ..core.param_groups import group_index
from ..engine.plugin import unwrap


def get_hook(runner, cls: Type):
    """The runner's one hook of type ``cls``."""
    hooks = [h for h in runner.hooks if isinstance(h, cls)]
    if len(hooks) != 1:
        raise LookupError(f'expected one {cls.__name__} in the runner, found '
                          f'{len(hooks)}')
    return hooks[0]


def groups_by_name(optimizer, model) -> Dict[str, dict]:
    """``{parameter name: its param group}`` of ``optimizer`` (a torch
    optimizer or an mmengine ``OptimWrapper``) over ``model`` (wrapped or
    not)."""
    index = group_index(getattr(optimizer, 'optimizer', optimizer))
    return {
        n: index[id(p)]
        for n, p in unwrap(model).named_parameters() if id(p) in index
    }


def unique_experiment_name(prefix: str) -> str:
    """``prefix`` and a random suffix. mmengine keys its loggers by experiment
    name (plus the second the runner started) and hands back an existing
    one: two runners of one name in one process and second would share a
    log file."""
    return f'{prefix}_{uuid.uuid4().hex[:8]}'
