"""Detectron2 hooks for WRS, the eps-shifted Lp regularizer and the
weight-norm dynamics: the core's features (:mod:`wrs_mm.core`) at
Detectron2's hook points.

Where each part runs: ``before_train`` attaches the feature to the
trainer's :class:`~wrs_mm.core.plugin.TrainingPlugin` (one per trainer,
shared by these hooks); the plugin analyses the first training forward (the
first real batch) and wraps the optimizer's ``step``, so the features act
on real optimizer steps only: once per accumulated update, never for a step
``AMPTrainer``'s grad scaler skips, and after it has unscaled the gradients.
``after_step`` writes the scalars to the trainer's ``EventStorage`` (its
TensorBoard / JSON writers see them), ``after_train`` detaches.
:class:`WeightRescaleHook`'s ``state_dict`` goes into Detectron2's checkpoint
(``trainer`` checkpointable of ``DetectionCheckpointer``), so
``resume_or_load(resume=True)`` / ``--resume`` continue exactly.

Under DDP (Detectron2's ``launch``) every rank takes rank 0's analysis and
rescales the same weights the same way, so the ranks stay identical.
"""
import json
import logging
import os
from typing import Optional

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

from ..core.norm_dynamics import NormDynamics, flat_scalars, layer_means
from ..core.param_groups import ROLE_SHIFTED, ROLE_WRS, claim_groups
from ..core.plugin import TrainingPlugin
from ..core.selection import check_patterns_match
from ..core.shifted_regularization import (ShiftedRegularization,
                                           check_shifted_cfg)
from ..core.weight_rescaling import WeightRescaling
from .optimizer import D2_FIX

logger = logging.getLogger('detectron2.wrs_mm')


def _log(message: str, level: int = logging.INFO) -> None:
    logger.log(level, message)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a (Distributed)DataParallel wrapper."""
    return model.module if isinstance(model,
                                      (nn.parallel.DistributedDataParallel,
                                       nn.DataParallel)) else model


def plugin_of(hook: HookBase) -> TrainingPlugin:
    """The trainer's plugin: the one another wrs_mm hook of the same
    trainer attached to, else a new one on the trainer's model and
    optimizer."""
    trainer = hook.trainer
    for h in trainer._hooks:
        plugin = getattr(h, 'plugin', None)
        if isinstance(plugin, TrainingPlugin) and \
                plugin.optimizer is trainer.optimizer:
            return plugin
    return TrainingPlugin(unwrap(trainer.model), trainer.optimizer)


def claim_resumed(hook: HookBase, names, role: str, owner: str) -> None:
    """Move the weights ``names`` a checkpoint's run had moved into its
    ``role`` groups back there, before the trainer loads the optimizer
    state (``SimpleTrainer.load_state_dict`` loads the hooks' states
    first), so that the saved groups match the optimizer's."""
    names = set(names)
    params = {
        n: p
        for n, p in unwrap(hook.trainer.model).named_parameters() if n in names
    }
    claim_groups(hook.trainer.optimizer, params, role, owner, D2_FIX)


class WeightRescaleHook(WeightRescaling, HookBase):
    """Rescale every scale-invariant weight vector to a fixed L2 norm every
    ``interval`` optimizer steps, without weight decay on those weights.

    ``w_j <- r * w_j / ||w_j||_2`` (Liu et al. 2021, "The Implicit Biases of
    SGD on Deep Neural Networks with Batch Normalization", Sec. 5, with
    r = 1). Which weights are invariant is decided by
    :func:`wrs_mm.core.analyze_invariance` on the first training batch: a
    conv whose output goes only into a BatchNorm / SyncBN /
    ``NaiveSyncBatchNorm`` in training mode is (per channel), one followed
    by ``FrozenBatchNorm2d`` is not (refused, with the reason in the
    start-up table). The optimizer must come from
    :func:`~wrs_mm.detectron2.get_wrs_optimizer_params`.

    Logs the start-up table (rescaled and refused weights) to the
    ``detectron2`` logger and writes it to ``<output_dir>/
    wrs_invariance.json``; puts ``wrs_norm_mean/min/max``,
    ``wrs_zero_rows`` and ``wrs_invariance_error`` (the row norms before
    the last rescale) into the ``EventStorage`` at every rescale.

    Args:
        interval (int): tau, in optimizer steps. Defaults to 10.
        target_norm (float | str): 1.0 (the paper), any number > 0, or
            ``'init'`` (each weight's RMS row norm at the start).
        output_dir (str, optional): where ``wrs_invariance.json`` goes;
            None: the directory of the trainer's ``PeriodicCheckpointer``
            (``OUTPUT_DIR`` / ``train.output_dir``).
        **options: ``granularity``, ``include``, ``exclude``,
            ``allow_non_invariant``, ``backend``, ``check_finite``,
            ``self_check``, ``rescale_optimizer_state``,
            ``max_invariance_error``: as for mmengine's ``WeightRescaleHook``
            (``docs/en/user_guides/weight_rescaling.md``).
    """
    NEW_RUN = ('start a new run from the checkpoint without --resume '
               '(MODEL.WEIGHTS / train.init_checkpoint)')
    GROUPS_FIX = D2_FIX

    def __init__(self,
                 interval: int = 10,
                 target_norm=1.0,
                 output_dir: Optional[str] = None,
                 **options):
        super().__init__(interval=interval, target_norm=target_norm, **options)
        self.output_dir = output_dir

    def before_train(self):
        plugin = plugin_of(self)
        check_patterns_match(self.include, self.exclude,
                             [n for n, _ in plugin.model.named_parameters()],
                             self.OWNER)
        self.attach(plugin)

    def after_train(self):
        self.detach()

    def load_state_dict(self, state: dict) -> None:
        """Resume: the step count, targets and weights of the checkpoint;
        those weights go back into the no-decay groups at once."""
        super().load_state_dict(state)
        if self._resumed:
            claim_resumed(self, self._resumed, ROLE_WRS, self.OWNER)

    def after_step(self):
        if self.last_stats is None:
            return
        stats = self.take_stats()
        get_event_storage().put_scalars(
            **{
                f'wrs_{k}': v
                for k, v in stats.items()
            }, smoothing_hint=False)

    def log(self, message: str, level: int = logging.INFO) -> None:
        _log(message, level)

    def save_records(self, records) -> None:
        out = self.output_dir or self._checkpoint_dir()
        if out and comm.is_main_process():
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, 'wrs_invariance.json'), 'w') as f:
                json.dump(records, f, indent=1)

    def _checkpoint_dir(self) -> Optional[str]:
        """Where the trainer's ``PeriodicCheckpointer`` saves, if any."""
        for h in self.trainer._hooks:
            save_dir = getattr(
                getattr(h, 'checkpointer', None), 'save_dir', None)
            if save_dir:
                return save_dir
        return None


class ShiftedLpHook(HookBase):
    """The eps-shifted Lp regularizer (Li, Chen, Yang, Sec. 5) in place of
    the weight decay of the scale-invariant weights: ``lambda/2
    (||w_j||_p - eps)^2`` per output channel (weight-standardised convs: the
    std-shifted form), applied right before every real optimizer step.

    Args:
        eps (float): >= 0. Defaults to 1e-3.
        p (float): >= 1. Defaults to 2.
        mode (str): ``'coupled'`` (added to the gradient, as the paper with
            SGD) or ``'decoupled'`` (AdamW-style).
        weight_decay (float, optional): lambda; None: each weight's
            configured decay (the optimizer's ``weight_decay``).
        **options: ``include``, ``exclude``, ``allow_non_invariant``,
            ``backend``, ``self_check``, as mmengine's
            ``paramwise_cfg.shifted_reg``.

    The optimizer must come from
    :func:`~wrs_mm.detectron2.get_wrs_optimizer_params`.
    """

    def __init__(self, **cfg):
        self.cfg = check_shifted_cfg(cfg, 'ShiftedLpHook')
        self.regularization = None
        self.plugin: Optional[TrainingPlugin] = None

    def before_train(self):
        self.plugin = plugin_of(self)
        self.regularization = ShiftedRegularization(self.cfg, 'ShiftedLpHook',
                                                    D2_FIX, _log)
        self.regularization.attach(self.plugin)

    def state_dict(self) -> dict:
        """The regularized weights (their param groups, for resume)."""
        reg = self.regularization and self.regularization.regularizer
        return dict(regularized=list(reg.names) if reg else [])

    def load_state_dict(self, state: dict) -> None:
        claim_resumed(self, state['regularized'], ROLE_SHIFTED,
                      'ShiftedLpHook')


class NormDynamicsHook(NormDynamics, HookBase):
    """Weight-norm dynamics of the selected layers every ``interval``
    iterations (:mod:`wrs_mm.core.diagnostics`): the layer averages
    ``norm_mean``, ``cos_abs_mean``, ``eff_lr`` and every layer's values
    (``norm/<layer>/<stat>``) go into the ``EventStorage``.

    Args: ``interval`` (default 50), ``include``, ``exclude``,
    ``all_channels``, as mmengine's ``NormDynamicsHook``.
    """

    def before_train(self):
        self.attach(plugin_of(self), self.trainer.iter)

    def after_train(self):
        self.detach()

    def iteration(self) -> int:
        return self.trainer.iter

    def publish(self, iteration: int, layers: dict) -> None:
        storage = get_event_storage()
        storage.put_scalars(**layer_means(layers), smoothing_hint=False)
        storage.put_scalars(**flat_scalars(layers), smoothing_hint=False)
