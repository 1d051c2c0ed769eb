"""mmengine adapter for weight rescaling (WRS), Liu et al. 2021, Sec. 5: the
core's :class:`~wrs_mm.core.weight_rescaling.WeightRescaling` at mmengine's
hook points.

Where each part runs, and why there:

* ``__init__`` (the config is built): the options are checked
  (``WeightRescaling.OPTIONS``, :data:`WeightRescaleHook.WINDOW_OPTIONS`).
* ``before_run``: checks only, before anything is built on the weights:
  sharded models, ``compile=True`` on an old torch, a resume mmengine's
  ``torch.load`` would refuse (:mod:`.config_checks`), patterns that match
  no parameter, and a ``custom_hooks`` list that drops its base's.
* ``after_load_checkpoint`` (resume only): the step count, the rescaled
  weights and their target norms come back from ``checkpoint['wrs_mm']``
  (``before_save_checkpoint`` writes them).
* ``before_train``: the weights are initialised (and loaded) only after
  ``before_run``, so the hook attaches here to the run's
  :class:`~wrs_mm.engine.plugin.WRSPlugin` (one per optim wrapper, kept in
  :data:`~wrs_mm.engine.plugin.PLUGINS`), with two callbacks:
* the first training forward (the plugin's forward hooks, callback
  ``WeightRescaling.setup``): which weights are invariant is read from that
  forward's autograd graph, before the first step; the hook chooses the
  weights, measures ``target_norm='init'``, moves the chosen weights into
  the no-decay param groups, and logs the table (also written to
  ``<work_dir>/wrs_invariance.json``).
* every real optimizer step (the plugin's wrapper of the torch optimizer's
  ``step``, callback ``WeightRescaling.after_optimizer_step``): the step is
  counted and every ``interval``-th one, inside the window, rescales. A
  wrapper of ``step`` and not a hook point: it runs once per accumulated
  update, never for an AMP step skipped for inf / NaN gradients, after
  ``GradScaler`` unscaled, and torch 2.1's dynamo strips torch's own
  optimizer hooks (:mod:`wrs_mm.core.plugin`).
* ``after_train_iter``: logging only; on the iterations ``LoggerHook``
  writes a line, the last rescale's statistics go into the message hub
  (the only host synchronisation).
* ``after_train``: the callbacks are removed, the plugin removes its
  forward hooks and puts back the optimizer's ``step`` it found; a
  non-finite norm of the last rescale raises.

What it changes, all of it torch's or mmengine's public state: the model's
forward hooks (from ``before_train`` to the first training forward) and
the chosen weights (in place, at each rescale); the torch optimizer's
``step`` (an instance attribute, from ``before_train`` to ``after_train``,
or for the optimizer's life when ``paramwise_cfg.shifted_reg`` installed
it first), its param groups (the chosen weights move into the role groups
once) and, with ``rescale_optimizer_state``, its state buffers (momentum,
Adam's moments); the message hub's ``train/wrs_*`` scalars; the
checkpoint's ``wrs_mm`` key. Nothing is set on the optim wrapper or the
runner.
"""
import json
import logging
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.registry import HOOKS

from ..core.options import boolean, integer, validate
from ..core.selection import check_patterns_match
from ..core.weight_rescaling import WeightRescaling
from .config_checks import check_resume_loadable, dropped_base_hooks
from .param_groups import MMENGINE_FIX
from .plugin import (WRSPlugin, check_compile, check_unsharded, log_current,
                     unwrap)


@HOOKS.register_module()
class WeightRescaleHook(WeightRescaling, Hook):
    """Rescale every scale-invariant weight vector to a fixed L2 norm (unit
    norm by default) every ``interval`` optimizer steps, and remove weight
    decay from those weights.

    ``w_j <- r * w_j / ||w_j||_2`` (Liu et al. 2021, "The Implicit Biases of
    SGD on Deep Neural Networks with Batch Normalization", Sec. 5, with r = 1).
    The target r sets the effective learning rate each rescale returns to
    (``lr / r^2`` for SGD, ``lr / r`` for Adam): ``target_norm='init'`` keeps
    every weight at the RMS row norm it had before the first optimizer step,
    which PyTorch's default conv initialisation puts near 0.58, not 1.
    Which weights are invariant, and per what (channel, group, tensor), is
    decided by :func:`wrs_mm.core.analyze_invariance` on the first training
    forward; the same decision moves them into a param group without weight
    decay before the first step (``WRSOptimWrapperConstructor`` builds one
    per settings class; :mod:`wrs_mm.core.param_groups`). A table of
    rescaled and refused weights is logged and written to
    ``<work_dir>/wrs_invariance.json``.

    Steps are counted right after every real optimizer step
    (:class:`~wrs_mm.core.plugin.TrainingPlugin`), so accumulation micro-steps
    (``accumulative_counts``) and AMP steps skipped for inf/NaN gradients do
    not count; the rescale runs then, on every rank. The step counter is saved
    in checkpoints (key ``wrs_mm``) with the rescaled weights and each one's
    target norm, and restored on resume (bitwise: neither the eps check nor
    ``'init'`` is measured again on the trained weights).

    The rescale does not synchronise with the host: its statistics (row norms
    before the rescale) stay on the device and are read only on the
    iterations mmengine's ``LoggerHook`` writes a log line, where the last
    rescale's ``wrs_norm_mean/min/max`` and ``wrs_zero_rows`` are logged (and
    left out of lines with no rescale since the previous one). A non-finite
    norm raises ``FloatingPointError`` naming the weight then, at the end of
    training, or at every rescale with ``check_finite='eager'``.

    Args:
        interval (int): tau, in optimizer steps. Defaults to 10.
        begin (int): first iteration (or epoch if ``by_epoch``) at which to
            rescale. Defaults to 0.
        end (int, optional): iteration (or epoch) from which to stop
            rescaling; None for never. Defaults to None.
        by_epoch (bool): whether ``begin``/``end`` are epochs.
            Defaults to False.
        granularity (str): ``'auto'`` (what the analysis found: per channel for
            BatchNorm / weight standardisation, per group for GroupNorm, per
            tensor for LayerNorm), ``'channel'`` (refuse weights that are not
            per-channel invariant) or ``'tensor'``. Defaults to 'auto'.
        include (str | list[str], optional): regexes (``re.search``) on
            parameter names; only matching weights are considered, and a
            matching weight that is not invariant is an error. None: all.
        exclude (str | list[str], optional): regexes of weights to leave alone.
        allow_non_invariant (bool): rescale weights matched by ``include`` even
            when they are not invariant (this changes the network function).
            Defaults to False.
        backend (str): ``'auto'``, ``'triton'``, ``'torch'`` or ``'loop'``; see
            :class:`wrs_mm.core.WeightRescaler`. Defaults to 'auto'.
        check_finite (str): ``'deferred'`` or ``'eager'``; see
            :class:`wrs_mm.core.WeightRescaler`. Defaults to 'deferred'.
        self_check (bool): check the fused Triton kernel against the torch
            reference on its first use per (device, dtype) and fall back to
            ``'torch'`` with a warning if it fails or disagrees. Defaults to
            True.
        rescale_optimizer_state (bool): also scale the optimizer's buffers of
            the rescaled rows as their gradients scale (SGD momentum and
            Adam's ``exp_avg`` by the row's norm ``s_j``, ``exp_avg_sq`` by
            ``s_j^2``); see :func:`wrs_mm.core.rescale_optimizer_state`.
            Defaults to False (the paper rescales the weights only).
        max_invariance_error (float): refuse (and report) invariant weights
            whose ``eps_error`` (``eps / (var + eps)`` at the first forward's
            activations, :class:`wrs_mm.core.ParamInvariance`) exceeds it:
            for them eps makes a rescale visibly change the output (a rescale
            by ``c`` moves it by about ``|c^2 - 1| / 2`` times the error).
            None: no limit. Defaults to 1e-2.
        target_norm (float | str): the norm every rescaled row is set to: a
            finite number > 0 (1.0, the paper's choice, by default) or
            ``'init'`` (per weight, the RMS of its row norms at the start of
            training). See :class:`wrs_mm.core.WeightRescaler`.
    """
    priority = 'ABOVE_NORMAL'  # before EMA and checkpoints see the weights
    NEW_RUN = 'start a new run with load_from'
    GROUPS_FIX = MMENGINE_FIX
    #: what the window options accept (``end`` is checked after them)
    WINDOW_OPTIONS = dict(begin=integer(0), by_epoch=boolean())

    def __init__(self,
                 interval: int = 10,
                 begin: int = 0,
                 end: Optional[int] = None,
                 by_epoch: bool = False,
                 granularity: str = 'auto',
                 include=None,
                 exclude=None,
                 allow_non_invariant: bool = False,
                 backend: str = 'auto',
                 check_finite: str = 'deferred',
                 self_check: bool = True,
                 rescale_optimizer_state: bool = False,
                 max_invariance_error: Optional[float] = 1e-2,
                 target_norm=1.0):
        super().__init__(interval, granularity, include, exclude,
                         allow_non_invariant, backend, check_finite,
                         self_check, rescale_optimizer_state,
                         max_invariance_error, target_norm)
        validate(self.OWNER, locals(), self.WINDOW_OPTIONS)
        if end is not None and not (isinstance(end, int) and end > begin):
            raise ValueError(f'{self.OWNER}.end must be None or an integer > '
                             f'begin ({begin}), got {end!r}')
        self.begin, self.end, self.by_epoch = begin, end, by_epoch
        self._runner = None

    def before_run(self, runner) -> None:
        """Refuse what WRS cannot run under (sharding, compile on an old
        torch, an unloadable resume), a pattern matching no parameter, and
        warn when the config drops its base's ``custom_hooks``."""
        check_unsharded(runner.model)
        check_compile(runner)
        check_resume_loadable(runner, self.OWNER)
        names = [n for n, _ in unwrap(runner.model).named_parameters()]
        check_patterns_match(self.include, self.exclude, names, self.OWNER)
        dropped = dropped_base_hooks(runner.cfg)
        if dropped:
            print_log(
                'WeightRescaleHook: the base config lists custom_hooks that '
                f'this config drops: {", ".join(dropped)}. A custom_hooks '
                "list replaces the base's; to keep them, write custom_hooks = "
                "_base_.custom_hooks + [dict(type='WeightRescaleHook', ...)].",
                logger='current',
                level=30)

    def before_train(self, runner) -> None:
        """Attach to the run's :class:`~wrs_mm.engine.plugin.WRSPlugin`: the
        weights are chosen at the first training forward, and every real
        optimizer step is counted from now on."""
        self._runner = runner
        self.attach(WRSPlugin.of(runner.optim_wrapper, runner.model))

    def after_train(self, runner) -> None:
        """Detach from the plugin (which then puts back the optimizer's
        ``step`` it found); a non-finite norm of the last rescale raises
        here."""
        self.detach()

    def log(self, message: str, level: int = logging.INFO) -> None:
        """Write ``message`` to the run's current logger."""
        log_current(message, level)

    def save_records(self, records) -> None:
        """``<work_dir>/wrs_invariance.json``, on rank 0."""
        runner = self._runner
        if runner.rank == 0 and runner.work_dir:
            with open(osp.join(runner.work_dir, 'wrs_invariance.json'),
                      'w') as f:
                json.dump(records, f, indent=1)

    def in_window(self) -> bool:
        """Whether the run's iteration (or epoch, with ``by_epoch``) is in
        ``[begin, end)``."""
        t = self._runner.epoch if self.by_epoch else self._runner.iter
        return t >= self.begin and (self.end is None or t < self.end)

    #: the message hub's keys of :meth:`take_stats`' values, in its order
    STATS_KEYS = ('train/wrs_norm_mean', 'train/wrs_norm_min',
                  'train/wrs_norm_max', 'train/wrs_zero_rows',
                  'train/wrs_invariance_error')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """On the iterations ``LoggerHook`` writes a line after
        (:func:`logger_writes_line`), put the last rescale's statistics in
        the message hub, read now (the only host synchronisation), or drop
        those of an earlier line when there was no rescale since."""
        if not logger_writes_line(runner, batch_idx):
            return
        scalars = runner.message_hub.log_scalars
        for key in self.STATS_KEYS:
            scalars.pop(key, None)
        stats = self.take_stats()
        for key, value in zip(self.STATS_KEYS, (stats or {}).values()):
            scalars[key] = HistoryBuffer()  # this rescale's value, no window
            scalars[key].update(value)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save :meth:`state_dict` under ``checkpoint['wrs_mm']``."""
        checkpoint.setdefault('wrs_mm', {})[self.OWNER] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On resume, continue from the checkpoint's WRS state."""
        if not runner._resume:
            return
        state = checkpoint.get('wrs_mm', {}).get(self.OWNER)
        if state is None:
            print_log(
                'WeightRescaleHook: the checkpoint has no WRS state; '
                'counting optimizer steps from the resumed iteration.',
                logger='current',
                level=30)
            self.steps = checkpoint.get('meta', {}).get('iter', 0)
            return
        self.load_state_dict(state)


def logger_writes_line(runner, batch_idx: int) -> bool:
    """Whether the run's ``LoggerHook`` writes a training log line after
    iteration ``batch_idx`` of the epoch; False for a run without one.

    By ``LoggerHook``'s documented settings, through the
    :class:`~mmengine.hooks.Hook` helpers it uses itself: every
    ``interval`` iterations of the epoch (``every_n_inner_iters``), and at
    the epoch's last iteration (``end_of_epoch``) unless ``ignore_last`` is
    set and the epoch is longer than ``interval``.
    """
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook):
            if hook.every_n_inner_iters(batch_idx, hook.interval):
                return True
            return bool(
                hook.end_of_epoch(runner.train_dataloader, batch_idx)
                and (not hook.ignore_last
                     or len(runner.train_dataloader) <= hook.interval))
    return False
