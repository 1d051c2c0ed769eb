"""mmengine adapter for weight rescaling (WRS), Liu et al. 2021, Sec. 5."""
import json
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.registry import HOOKS

from ..core import InvarianceReport, RowEntry, WeightRescaler, rescale
from ..core.backend import BACKENDS
from ..core.eps_error import EpsTerm, RescaleChangeMeter
from ..core.invariance import fmt_error, format_table, granularity_of
from ..core.rescale import CHECKS, check_target_norm
from .config_checks import check_resume_loadable, dropped_base_hooks
from .options import boolean, integer, one_of, positive, validate
from .param_groups import ROLE_WRS, claim_groups, groups_summary
from .plugin import (WEIGHT_RESCALE, WRSPlugin, check_compile, check_unsharded,
                     unwrap)
from .selection import check_patterns_match, compile_patterns, select

GRANULARITIES = ('auto', 'channel', 'tensor')
OWNER = 'WeightRescaleHook'


@HOOKS.register_module()
class WeightRescaleHook(Hook):
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
    per settings class; :mod:`wrs_mm.engine.param_groups`). A table of
    rescaled and refused weights is logged and written to
    ``<work_dir>/wrs_invariance.json``.

    Steps are counted right after every real optimizer step
    (:class:`~wrs_mm.engine.plugin.WRSPlugin`), so accumulation micro-steps
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
    #: what each option accepts (``end``, the patterns and ``target_norm``
    #: are checked after these)
    OPTIONS = dict(
        interval=integer(1),
        begin=integer(0),
        by_epoch=boolean(),
        granularity=one_of(*GRANULARITIES),
        allow_non_invariant=boolean(),
        backend=one_of(*BACKENDS),
        check_finite=one_of(*CHECKS),
        self_check=boolean(),
        rescale_optimizer_state=boolean(),
        max_invariance_error=positive(none=True))

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
        validate(OWNER, locals(), self.OPTIONS)
        if end is not None and not (isinstance(end, int) and end > begin):
            raise ValueError(f'{OWNER}.end must be None or an integer > '
                             f'begin ({begin}), got {end!r}')
        check_target_norm(
            target_norm, f'{OWNER}.target_norm', per_weight=False)
        self.include = compile_patterns(include, f'{OWNER}.include')
        self.exclude = compile_patterns(exclude, f'{OWNER}.exclude')
        self.interval, self.begin, self.end = interval, begin, end
        self.by_epoch, self.granularity = by_epoch, granularity
        self.allow_non_invariant = allow_non_invariant
        self.backend, self.check_finite = backend, check_finite
        self.self_check = self_check
        self.rescale_optimizer_state = rescale_optimizer_state
        self.max_invariance_error = max_invariance_error
        self.target_norm = target_norm
        self._resumed_targets: Optional[dict] = None
        self._resumed: Optional[dict] = None  # rescaled weights: rows
        self.meter: Optional[RescaleChangeMeter] = None
        self._pending_change = None  # of the last rescale, not yet logged
        self._pending_stats = None  # of the last rescale, not yet logged
        self.steps = 0  # real optimizer steps taken
        self.num_rescales = 0
        self.rescaler: Optional[WeightRescaler] = None
        self._runner = None
        self._plugin: Optional[WRSPlugin] = None

    def before_run(self, runner) -> None:
        check_unsharded(runner.model)
        check_compile(runner)
        check_resume_loadable(runner, 'WeightRescaleHook')
        names = [n for n, _ in unwrap(runner.model).named_parameters()]
        check_patterns_match(self.include, self.exclude, names,
                             'WeightRescaleHook')
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
        self._runner = runner
        self._plugin = WRSPlugin.of(runner.optim_wrapper, runner.model)
        self._plugin.on_analysis(WEIGHT_RESCALE, self._setup)
        self._plugin.on_step(WEIGHT_RESCALE, post=self._after_step)

    def after_train(self, runner) -> None:
        if self._plugin is not None:
            self._plugin.remove(WEIGHT_RESCALE)
        if self._pending_stats is not None:  # surface a non-finite norm
            self._pending_stats.norm_mean

    def _setup(self, report: InvarianceReport) -> None:
        """Choose the weights, remove their decay, log the table."""
        runner = self._runner
        rescaled, refused = self._verdicts(report)
        if self._resumed is not None:
            self._check_resumed_selection(rescaled)
        params = dict(unwrap(runner.model).named_parameters())
        if rescaled:  # measures 'init' targets; changes nothing yet
            self.rescaler = WeightRescaler(
                [RowEntry(v.name, params[v.name], n) for v, n in rescaled],
                backend=self.backend,
                check_finite=self.check_finite,
                self_check=self.self_check,
                target_norm=self._resumed_targets or self.target_norm)
        self._log_table(runner, rescaled, refused)
        if not rescaled:
            print_log(
                f'{OWNER}: the model has no scale-invariant weight to '
                'rescale; the hook does nothing.',
                logger='current',
                level=30)
            return
        optimizer = runner.optim_wrapper.optimizer
        claim_groups(optimizer, {
            v.name: params[v.name]
            for v, _ in rescaled
        }, ROLE_WRS, OWNER)
        print_log(
            'Optimizer param groups after the WRS decay split:\n' +
            groups_summary(optimizer),
            logger='current')
        self.meter = RescaleChangeMeter(
            _eps_terms(unwrap(runner.model), [v for v, _ in rescaled]))

    def _verdicts(self, report: InvarianceReport) -> tuple:
        """``([(weight, rows to rescale)], [(weight, why refused)])`` over
        the report's candidates."""
        chosen = {
            v.name
            for v in select(report, self.include, self.exclude, OWNER,
                            self.allow_non_invariant)
        }
        rescaled, refused = [], []
        for v in report.candidates():
            rows, why = self._verdict(v, v.name in chosen)
            if rows is None:
                refused.append((v, why))
            else:
                rescaled.append((v, rows))
        return rescaled, refused

    def _verdict(self, v, chosen: bool) -> tuple:
        """``(rows, None)`` to rescale ``v``, or ``(None, why not)``."""
        rows = self._rows(v) if chosen else None
        if rows is not None and self._resumed is not None:
            if v.name in self._resumed:
                return rows, None
            return None, 'refused at the start of the run (kept so on resume)'
        if rows is not None and v.invariant and self._eps_too_large(v):
            return None, (f'eps breaks the invariance: eps / (var + eps) = '
                          f'{v.eps_error:.1e} > max_invariance_error '
                          f'{self.max_invariance_error:g}')
        if rows is not None:
            return rows, None
        if chosen:
            return None, (f'granularity={self.granularity!r} requested, but '
                          f'the weight is {v.kind}-invariant only')
        if v.invariant:
            return None, 'not selected by include / exclude'
        return None, v.reason

    def _check_resumed_selection(self, rescaled) -> None:
        """On resume the weights rescaled are those of the checkpoint: the
        eps check of the first forward is not made again (the trained weights'
        activations differ from the initial ones, and a weight crossing
        ``max_invariance_error`` would change the run). Anything else that
        changes the set (include / exclude / granularity, the model) is an
        error, before any step."""
        now = {v.name: rows for v, rows in rescaled}
        changed = sorted(
            f'{n} ({self._resumed.get(n, 0)} rows -> {now.get(n, 0)})'
            for n in set(now) | set(self._resumed)
            if now.get(n) != self._resumed.get(n))
        if not changed:
            print_log(
                f'WeightRescaleHook: resumed: rescaling the {len(now)} '
                'weights of the checkpoint (the eps check is not made again)',
                logger='current')
            return
        raise ValueError(
            'WeightRescaleHook: the resumed checkpoint rescaled '
            f'{len(self._resumed)} weights, this config and model '
            f'{len(now)}; changed: {", ".join(changed)}. Resume with the same '
            'include, exclude, granularity and allow_non_invariant (or start '
            'a new run with load_from)')

    def _eps_too_large(self, v) -> bool:
        return (self.max_invariance_error is not None
                and v.eps_error is not None
                and v.eps_error > self.max_invariance_error)

    def _rows(self, v) -> Optional[int]:
        if not v.invariant:  # forced with allow_non_invariant
            return 1 if self.granularity == 'tensor' else v.shape[0]
        if self.granularity == 'tensor':
            return 1
        if self.granularity == 'channel' and v.rows != v.shape[0]:
            return None
        return v.rows

    def _log_table(self, runner, rescaled, refused) -> None:
        """The verdict per weight: logged, and written to
        ``<work_dir>/wrs_invariance.json`` (each weight's
        :meth:`~wrs_mm.core.ParamInvariance.to_json` plus ``rescaled``,
        ``rescale_rows``, ``target_norm`` and the ``reason`` for the
        action)."""
        targets = self.rescaler.targets if self.rescaler else {}
        records = [(v, 'rescale', rows,
                    v.reason if v.invariant else 'FORCED: ' + v.reason)
                   for v, rows in rescaled]
        records += [(v, 'refuse', 0, why) for v, why in refused]
        table = format_table(
            ('parameter', 'action', 'granularity', 'target', 'eps err',
             'rescale chg', 'reason'),
            [(v.name, action, _granularity(rows, v.shape[0]),
              f'{targets[v.name]:.4g}' if v.name in targets else '-',
              fmt_error(v.eps_error), fmt_error(v.rescale_change), why)
             for v, action, rows, why in records])
        goal = ("each weight's initial RMS row norm" if self.target_norm
                == 'init' else f'norm {self.target_norm:g}')
        print_log(
            f'WeightRescaleHook: rescaling {len(rescaled)} weights to '
            f'{goal} every {self.interval} optimizer steps, refused '
            f'{len(refused)}\n' + table,
            logger='current')
        if runner.rank == 0 and runner.work_dir:
            with open(osp.join(runner.work_dir, 'wrs_invariance.json'),
                      'w') as f:
                json.dump([
                    dict(
                        v.to_json(),
                        rescaled=rows > 0,
                        rescale_rows=rows,
                        target_norm=targets.get(v.name),
                        reason=why) for v, _, rows, why in records
                ],
                          f,
                          indent=1)

    def _in_window(self) -> bool:
        t = self._runner.epoch if self.by_epoch else self._runner.iter
        return t >= self.begin and (self.end is None or t < self.end)

    def _after_step(self) -> None:
        self.steps += 1
        if (self.rescaler is None or self.steps % self.interval
                or not self._in_window()):
            return
        self._pending_stats = self.rescaler()
        if self.rescale_optimizer_state:
            rescale.rescale_optimizer_state(self._plugin.optimizer,
                                            self._pending_stats)
        self._pending_change = self.meter(self._pending_stats)
        self.num_rescales += 1

    STATS_KEYS = ('train/wrs_norm_mean', 'train/wrs_norm_min',
                  'train/wrs_norm_max', 'train/wrs_zero_rows',
                  'train/wrs_invariance_error')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """On log iterations, read the last rescale's statistics (the only
        host synchronisation) into the message hub, or drop stale ones."""
        if not self._logged_now(runner, batch_idx):
            return
        scalars = runner.message_hub.log_scalars
        stats, self._pending_stats = self._pending_stats, None
        change, self._pending_change = self._pending_change, None
        for key in self.STATS_KEYS:
            scalars.pop(key, None)
        if stats is None:
            return
        values = [
            stats.norm_mean, stats.norm_min, stats.norm_max, stats.zero_rows
        ]
        if change is not None:
            values.append(float(change))
        for key, value in zip(self.STATS_KEYS, values):
            scalars[key] = HistoryBuffer()  # this rescale's value, no window
            scalars[key].update(value)

    @staticmethod
    def _logged_now(runner, batch_idx: int) -> bool:
        """Whether mmengine's ``LoggerHook`` writes a line after this
        iteration (its own test)."""
        for hook in runner.hooks:
            if isinstance(hook, LoggerHook):
                if hook.every_n_inner_iters(batch_idx, hook.interval):
                    return True
                return bool(
                    hook.end_of_epoch(runner.train_dataloader, batch_idx)
                    and (not hook.ignore_last
                         or len(runner.train_dataloader) <= hook.interval))
        return False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('wrs_mm', {})['WeightRescaleHook'] = dict(
            steps=self.steps,
            num_rescales=self.num_rescales,
            target_norm=self.target_norm,
            targets=self.rescaler.targets if self.rescaler else None,
            rescaled=self._selection())

    def _selection(self) -> dict:
        """The rescaled weights, by name, with their number of rows."""
        if self.rescaler is None:
            return {}
        return {e.name: e.rows for e in self.rescaler.pack.entries}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:
            return
        state = checkpoint.get('wrs_mm', {}).get('WeightRescaleHook')
        if state is None:
            print_log(
                'WeightRescaleHook: the checkpoint has no WRS state; '
                'counting optimizer steps from the resumed iteration.',
                logger='current',
                level=30)
            self.steps = checkpoint.get('meta', {}).get('iter', 0)
            return
        saved = state.get('target_norm', 1.0)
        if saved != self.target_norm:
            raise ValueError(
                f'WeightRescaleHook.target_norm is {self.target_norm!r} but '
                f'the checkpoint was trained with {saved!r}; resume with '
                'the same target_norm (or start a new run with load_from)')
        self.steps = state['steps']
        self.num_rescales = state['num_rescales']
        self._resumed_targets = state.get('targets')
        # None in checkpoints written before the selection was saved: the
        # weights are selected again, as then
        self._resumed = state.get('rescaled')


def _granularity(rows: int, channels: int) -> str:
    if not rows:
        return '-'
    gran = granularity_of(rows, channels)
    return f'group({rows})' if gran == 'group' else gran


def _eps_terms(model, rescaled) -> dict:
    """What the meter needs of each rescaled weight: its BatchNorms' live
    ``running_var`` and eps, or a weight-standardised layer's eps."""
    modules = dict(model.named_modules())
    terms = {}
    for v in rescaled:
        layer = modules.get(v.name.rsplit('.', 1)[0])
        if v.kind == 'ws':
            eps = getattr(layer, 'eps', None)
            if isinstance(eps, float):
                terms[v.name] = EpsTerm(ws_eps=eps)
            continue
        norms = [modules.get(n) for n in v.norms]
        if norms and all(
                getattr(m, 'running_var', None) is not None for m in norms):
            terms[v.name] = EpsTerm(norms=[(m.running_var, m.eps)
                                           for m in norms])
    return terms
