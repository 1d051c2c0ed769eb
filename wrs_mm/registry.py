"""The ``wrs_mm`` scope in mmengine's registry tree.

wrs_mm registers its classes in mmengine's root registries, so that the
mmdet / mmseg scopes see them. A config inherited through a ``wrs_mm::``
path gets ``_scope_='wrs_mm'`` on its dicts from mmengine, which then imports
this module and builds them from the registries below: empty children of
every root registry, whose import location is ``wrs_mm`` itself, so every
lookup falls through to the root and mmengine prints no "Failed to search
registry" or "not installed" warning.
"""
from mmengine.registry import root

_ROOTS = ('DATASETS', 'DATA_SAMPLERS', 'EVALUATOR', 'FUNCTIONS', 'HOOKS',
          'INFERENCERS', 'LOG_PROCESSORS', 'LOOPS', 'METRICS', 'MODELS',
          'MODEL_WRAPPERS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
          'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'RUNNERS',
          'RUNNER_CONSTRUCTORS', 'STRATEGIES', 'TASK_UTILS', 'TRANSFORMS',
          'VISBACKENDS', 'VISUALIZERS', 'WEIGHT_INITIALIZERS')


def _child(name: str):
    parent = getattr(root, name)
    return type(parent)(
        parent.name, parent=parent, scope='wrs_mm', locations=['wrs_mm'])


DATASETS, DATA_SAMPLERS, EVALUATOR, FUNCTIONS, HOOKS, INFERENCERS, \
    LOG_PROCESSORS, LOOPS, METRICS, MODELS, MODEL_WRAPPERS, OPTIMIZERS, \
    OPTIM_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS, RUNNERS, \
    RUNNER_CONSTRUCTORS, STRATEGIES, TASK_UTILS, TRANSFORMS, VISBACKENDS, \
    VISUALIZERS, WEIGHT_INITIALIZERS = map(_child, _ROOTS)
