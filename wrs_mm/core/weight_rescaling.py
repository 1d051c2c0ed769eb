"""Weight rescaling (WRS) over a training run, whichever framework drives
it: Liu et al. 2021, "The Implicit Biases of SGD on Deep Neural Networks
with Batch Normalization", Sec. 5.

Every ``interval`` real optimizer steps, ``w_j <- r * w_j / ||w_j||_2`` for
every row of every chosen weight, and no weight decay on those weights.
:class:`WeightRescaling` holds what that takes and is the same for every
adapter: the choice of weights from the first forward's analysis, the move
of those weights into the no-decay param groups
(:func:`~wrs_mm.core.param_groups.claim_groups`), the table of rescaled and
refused weights, the step count and the rescale, and the state a checkpoint
keeps. An adapter (mmengine's and Detectron2's ``WeightRescaleHook``)
inherits it, attaches it to the run's :class:`~wrs_mm.core.plugin.
TrainingPlugin` and says where its log, its table and its scalars go
(:meth:`WeightRescaling.log`, :meth:`WeightRescaling.save_records`).
"""
import logging
from typing import List, Optional

from . import rescale
from .backend import BACKENDS
from .eps_error import EpsTerm, RescaleChangeMeter
from .options import boolean, integer, one_of, positive, validate
from .param_groups import CORE_FIX, ROLE_WRS, claim_groups, groups_summary
from .plugin import WEIGHT_RESCALE, TrainingPlugin, log_std
from .rescale import WeightRescaler, check_target_norm
from .rows import RowEntry
from .selection import compile_patterns, select
from .verdicts import InvarianceReport, fmt_error, format_table, granularity_of

GRANULARITIES = ('auto', 'channel', 'tensor')


class WeightRescaling:
    """WRS over one run; see the module doc and the adapters' hooks for what
    each option means (they share them).

    After :meth:`attach`, ``steps`` counts real optimizer steps,
    ``num_rescales`` the rescales, ``rescaler`` is the
    :class:`~wrs_mm.core.WeightRescaler` of the chosen weights (None before
    the first forward, or when none is invariant), ``last_stats`` /
    ``last_change`` the statistics of the last rescale (device tensors until
    read).
    """
    #: the name the errors and the log use (the adapter's hook)
    OWNER = 'WeightRescaleHook'
    #: how the adapter's users start a new run from a checkpoint
    NEW_RUN = 'start a new run from the checkpoint without resuming'
    #: how the adapter's users get the role groups
    GROUPS_FIX = CORE_FIX
    #: what each option accepts (the patterns and ``target_norm`` are
    #: checked after these)
    OPTIONS = dict(
        interval=integer(1),
        granularity=one_of(*GRANULARITIES),
        allow_non_invariant=boolean(),
        backend=one_of(*BACKENDS),
        check_finite=one_of(*rescale.CHECKS),
        self_check=boolean(),
        rescale_optimizer_state=boolean(),
        max_invariance_error=positive(none=True))

    def __init__(self,
                 interval: int = 10,
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
        validate(self.OWNER, locals(), self.OPTIONS)
        check_target_norm(
            target_norm, f'{self.OWNER}.target_norm', per_weight=False)
        self.include = compile_patterns(include, f'{self.OWNER}.include')
        self.exclude = compile_patterns(exclude, f'{self.OWNER}.exclude')
        self.interval, self.granularity = interval, granularity
        self.allow_non_invariant = allow_non_invariant
        self.backend, self.check_finite = backend, check_finite
        self.self_check = self_check
        self.rescale_optimizer_state = rescale_optimizer_state
        self.max_invariance_error = max_invariance_error
        self.target_norm = target_norm
        self._resumed_targets: Optional[dict] = None
        self._resumed: Optional[dict] = None  # rescaled weights: rows
        self.meter: Optional[RescaleChangeMeter] = None
        self.last_change = None  # of the last rescale, not yet read
        self.last_stats = None  # of the last rescale, not yet read
        self.steps = 0  # real optimizer steps taken
        self.num_rescales = 0
        self.rescaler: Optional[WeightRescaler] = None
        self.plugin: Optional[TrainingPlugin] = None

    # what an adapter provides ---------------------------------------------
    def log(self, message: str, level: int = logging.INFO) -> None:
        """Write ``message`` to the run's log."""
        log_std(message, level)

    def save_records(self, records: List[dict]) -> None:
        """Keep the verdict per weight (``wrs_invariance.json``); nothing by
        default."""

    def in_window(self) -> bool:
        """Whether the rescale is on at this point of training."""
        return True

    # the run ----------------------------------------------------------------
    def attach(self, plugin: TrainingPlugin) -> None:
        """Choose the weights at the plugin's first-forward analysis and
        count (and rescale after) each real optimizer step from now on."""
        self.plugin = plugin
        plugin.on_analysis(WEIGHT_RESCALE, self.setup)
        plugin.on_step(WEIGHT_RESCALE, post=self.after_optimizer_step)

    def detach(self) -> None:
        """Stop; a non-finite norm of the last rescale raises now."""
        if self.plugin is not None:
            self.plugin.remove(WEIGHT_RESCALE)
        if self.last_stats is not None:
            self.last_stats.norm_mean

    def setup(self, report: InvarianceReport) -> None:
        """Choose the weights, remove their decay, log the table."""
        rescaled, refused = self._verdicts(report)
        if self._resumed is not None:
            self._check_resumed_selection(rescaled)
        params = dict(self.plugin.model.named_parameters())
        if rescaled:  # measures 'init' targets; changes nothing yet
            self.rescaler = WeightRescaler(
                [RowEntry(v.name, params[v.name], n) for v, n in rescaled],
                backend=self.backend,
                check_finite=self.check_finite,
                self_check=self.self_check,
                target_norm=self._resumed_targets or self.target_norm)
        self._log_table(rescaled, refused)
        if not rescaled:
            self.log(
                f'{self.OWNER}: the model has no scale-invariant weight to '
                'rescale; the hook does nothing.', logging.WARNING)
            return
        optimizer = self.plugin.optimizer
        claim_groups(optimizer, {
            v.name: params[v.name]
            for v, _ in rescaled
        }, ROLE_WRS, self.OWNER, self.GROUPS_FIX)
        self.log('Optimizer param groups after the WRS decay split:\n' +
                 groups_summary(optimizer))
        self.meter = RescaleChangeMeter(
            _eps_terms(self.plugin.model, [v for v, _ in rescaled]))

    def _verdicts(self, report: InvarianceReport) -> tuple:
        """``([(weight, rows to rescale)], [(weight, why refused)])`` over
        the report's candidates."""
        chosen = {
            v.name
            for v in select(report, self.include, self.exclude, self.OWNER,
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
            self.log(f'{self.OWNER}: resumed: rescaling the {len(now)} '
                     'weights of the checkpoint (the eps check is not made '
                     'again)')
            return
        raise ValueError(
            f'{self.OWNER}: the resumed checkpoint rescaled '
            f'{len(self._resumed)} weights, this config and model '
            f'{len(now)}; changed: {", ".join(changed)}. Resume with the same '
            f'include, exclude, granularity and allow_non_invariant (or '
            f'{self.NEW_RUN})')

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

    def _log_table(self, rescaled, refused) -> None:
        """The verdict per weight: logged, and handed to
        :meth:`save_records` (each weight's
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
        self.log(f'{self.OWNER}: rescaling {len(rescaled)} weights to {goal} '
                 f'every {self.interval} optimizer steps, refused '
                 f'{len(refused)}\n' + table)
        self.save_records([
            dict(
                v.to_json(),
                rescaled=rows > 0,
                rescale_rows=rows,
                target_norm=targets.get(v.name),
                reason=why) for v, _, rows, why in records
        ])

    def after_optimizer_step(self) -> None:
        """Count a real optimizer step; rescale every ``interval``."""
        self.steps += 1
        if (self.rescaler is None or self.steps % self.interval
                or not self.in_window()):
            return
        self.last_stats = self.rescaler()
        if self.rescale_optimizer_state:
            rescale.rescale_optimizer_state(self.plugin.optimizer,
                                            self.last_stats)
        self.last_change = self.meter(self.last_stats)
        self.num_rescales += 1

    def take_stats(self) -> Optional[dict]:
        """The last rescale's statistics, read on the host (a device sync),
        once: ``{norm_mean, norm_min, norm_max, zero_rows[,
        invariance_error]}``; None when there was no rescale since the last
        call."""
        stats, self.last_stats = self.last_stats, None
        change, self.last_change = self.last_change, None
        if stats is None:
            return None
        out = dict(
            norm_mean=stats.norm_mean,
            norm_min=stats.norm_min,
            norm_max=stats.norm_max,
            zero_rows=stats.zero_rows)
        if change is not None:
            out['invariance_error'] = float(change)
        return out

    # checkpoints ----------------------------------------------------------
    def state_dict(self) -> dict:
        """What a checkpoint keeps to resume exactly: the step count, the
        rescaled weights and each one's target norm."""
        return dict(
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

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (before the first forward)."""
        saved = state.get('target_norm', 1.0)
        if saved != self.target_norm:
            raise ValueError(
                f'{self.OWNER}.target_norm is {self.target_norm!r} but the '
                f'checkpoint was trained with {saved!r}; resume with the '
                f'same target_norm (or {self.NEW_RUN})')
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
