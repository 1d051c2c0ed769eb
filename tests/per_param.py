"""The param-group layout of wrs_mm before groups were merged by settings
(up to commit 7499571), as a constructor the tests compare the merged layout
against (``constructor='PerParamWRSConstructor'``)."""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from wrs_mm.core.param_groups import CLASS, group_index
from wrs_mm.engine import WRSOptimWrapperConstructor
from wrs_mm.engine.plugin import unwrap


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
class PerParamWRSConstructor(WRSOptimWrapperConstructor):
    """wrs_mm's constructor with the param-group layout it had before groups
    were merged by settings: one group per parameter, in the order of
    ``model.named_parameters()``, which the features claim in place. The
    reference the merged layout is compared against."""

    def __call__(self, model):
        wrapper = super().__call__(model)
        index = group_index(wrapper.optimizer)
        wrapper.optimizer.param_groups = [
            dict(
                {
                    k: v
                    for k, v in index[id(p)].items()
                    if k not in ('params', CLASS)
                },
                params=[p]) for _, p in unwrap(model).named_parameters()
        ]
        return wrapper
