"""The :class:`WRSPlugin` of an mmengine run: the core's
:class:`~wrs_mm.core.plugin.TrainingPlugin` (the first-forward analysis and
the optimizer-step callbacks, in a named order), one per optimizer wrapper,
shared by ``WeightRescaleHook``, ``paramwise_cfg.shifted_reg`` of
``WRSOptimWrapperConstructor`` and ``NormDynamicsHook``, which never talk to
each other; and the checks of what mmengine runs under (sharding, compile).

``WeightRescaleHook`` and ``NormDynamicsHook`` remove their own callbacks in
``after_train``; the shifted regularizer, which has no end-of-training point,
keeps its callback as long as the optimizer lives, or until
``WRSPlugin.of(optim_wrapper, model).remove()``. The plugins are kept in
:data:`PLUGINS`, a weak table by optimizer wrapper; nothing is set on the
wrapper. The config keeps the standard ``OptimWrapper`` /
``AmpOptimWrapper`` (mmdet's ``--amp`` replaces the wrapper type; mmseg
refuses custom ones).
"""
import logging
import weakref

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from ..core.compat import MIN_COMPILE, require_torch
from ..core.plugin import COMPILE_REFUSAL, TrainingPlugin


def log_current(message: str, level: int = logging.INFO) -> None:
    """The features' log in an mmengine run: its current logger."""
    print_log(message, logger='current', level=level)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return model.module if is_model_wrapper(model) else model


#: what wrs_mm runs under; the sharding ones are refused by
#: :func:`check_unsharded`
SUPPORTED = ('the default Runner (one process or DDP), or FlexibleRunner '
             "with strategy=dict(type='DDPStrategy') or "
             "'SingleDeviceStrategy'")


def check_unsharded(model) -> None:
    """Refuse models whose weights may be split across ranks (FSDP,
    DeepSpeed ZeRO): a per-row norm computed on one rank's shard is wrong,
    and the parameters the optimizer sees are flat shards, not the analysed
    weights. Raises ``RuntimeError`` naming the strategy and what is
    supported."""
    names = {c.__name__ for c in type(model).__mro__}
    what = None
    if names & {'DeepSpeedEngine', 'MMDeepSpeedEngineWrapper'}:
        what = "DeepSpeed (mmengine's DeepSpeedStrategy)"
    elif isinstance(model, nn.Module):
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel
        except ImportError:  # pragma: no cover - torch without distributed
            FullyShardedDataParallel = ()
        if any(
                isinstance(m, FullyShardedDataParallel)
                for m in model.modules()):
            what = (
                "FSDP (mmengine's FSDPStrategy / MMFullyShardedDataParallel"
                ', torch FullyShardedDataParallel)')
        elif any(type(p).__name__ == 'DTensor' for p in model.parameters()):
            what = ('sharded DTensor parameters (torch fully_shard / tensor '
                    'parallelism)')
        elif any('fully_shard' in _composable_apis(m)
                 for m in model.modules()):
            what = 'torch fully_shard (composable FSDP)'
    if what is not None:
        refuse_sharding(what)


def _composable_apis(module: nn.Module) -> dict:
    """The torch composable APIs applied to ``module`` (``fully_shard``,
    ``replicate``, ...): torch 2.1-2.3's ``fully_shard`` shards into flat
    parameters that are not DTensors."""
    try:
        from torch.distributed._composable.contract import _get_registry
    except ImportError:  # pragma: no cover - torch without distributed
        return {}
    return _get_registry(module) or {}


def check_compile(runner) -> None:
    """Refuse mmengine's ``compile=True`` before the run on a torch that
    wrs_mm does not train compiled under (the hooks call it; every feature
    also checks at the first forward)."""
    if runner.cfg.get('compile'):
        require_torch(MIN_COMPILE, *COMPILE_REFUSAL)


def refuse_sharding(what: str) -> None:
    """Raise the ``RuntimeError`` for a sharding strategy ``what``."""
    raise RuntimeError(
        f'wrs_mm does not support {what}: the rows of a weight can be split '
        'across ranks, so norms computed on one shard would be wrong. '
        f'Supported: {SUPPORTED}.')


#: every :class:`WRSPlugin`, by its mmengine optimizer wrapper: the only
#: place the plugin of a run is kept (nothing is set on the wrapper); an
#: entry goes with its wrapper
PLUGINS = weakref.WeakKeyDictionary()


class WRSPlugin(TrainingPlugin):
    """The :class:`~wrs_mm.core.plugin.TrainingPlugin` of an mmengine
    optimizer wrapper, kept in :data:`PLUGINS`."""

    @classmethod
    def of(cls, optim_wrapper, model: nn.Module) -> 'WRSPlugin':
        """The plugin of ``optim_wrapper`` (an mmengine ``OptimWrapper``),
        created on first use.

        Args:
            optim_wrapper (OptimWrapper): the run's optimizer wrapper.
            model (nn.Module): the run's model (a DDP wrapper is unwrapped).
        """
        plugin = PLUGINS.get(optim_wrapper)
        if plugin is None:
            check_unsharded(model)
            plugin = PLUGINS[optim_wrapper] = cls(
                unwrap(model), optim_wrapper.optimizer)
        return plugin
