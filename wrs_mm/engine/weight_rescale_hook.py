"""mmengine adapter for weight rescaling (WRS), Liu et al. Sec. 5."""
import json
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..core import InvarianceReport, RowEntry, WeightRescaler
from ..core.invariance import granularity_of
from ..core.rescale import BACKENDS, CHECKS
from .probe import first_forward_analysis
from .selection import (check_patterns_match, claim_groups, compile_patterns,
                        groups_summary, select)

GRANULARITIES = ('auto', 'channel', 'tensor')


@HOOKS.register_module()
class WeightRescaleHook(Hook):
    """Rescale every scale-invariant weight vector to unit L2 norm every
    ``interval`` optimizer steps, and remove weight decay from those weights.

    ``w_j <- w_j / ||w_j||_2`` (Liu et al., "The Implicit Biases of SGD on Deep
    Neural Networks with Batch Normalization", Sec. 5). Which weights are
    invariant, and per what (channel, group, tensor), is decided by
    :func:`wrs_mm.core.analyze_invariance` on the first training forward; the
    same decision sets their optimizer param groups to ``weight_decay=0`` before
    the first step (use ``WRSOptimWrapperConstructor`` so that every parameter has
    its own group). A table of rescaled and refused weights is logged and
    written to ``<work_dir>/wrs_invariance.json``.

    Steps are counted by a post-hook on the torch optimizer, so accumulation
    micro-steps (``accumulative_counts``) and AMP steps skipped for inf/NaN
    gradients do not count; the rescale runs right after the step on every
    rank. The step counter is saved in checkpoints and restored on resume.

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
    """
    priority = 'ABOVE_NORMAL'  # before EMA and checkpoints see the weights

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
                 check_finite: str = 'deferred'):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError('WeightRescaleHook: interval (tau) must be an '
                             f'integer >= 1, got {interval!r}')
        if not isinstance(begin, int) or begin < 0:
            raise ValueError(
                f'WeightRescaleHook: begin must be an integer >= 0, got {begin!r}')
        if end is not None and (not isinstance(end, int) or end <= begin):
            raise ValueError(f'WeightRescaleHook: end ({end!r}) must be None or '
                             f'an integer > begin ({begin})')
        if granularity not in GRANULARITIES:
            raise ValueError(f'WeightRescaleHook: granularity must be one of '
                             f'{GRANULARITIES}, got {granularity!r}')
        self.interval, self.begin, self.end = interval, begin, end
        self.by_epoch, self.granularity = by_epoch, granularity
        self.include = compile_patterns(include, 'WeightRescaleHook.include')
        self.exclude = compile_patterns(exclude, 'WeightRescaleHook.exclude')
        self.allow_non_invariant = allow_non_invariant
        if backend not in BACKENDS:
            raise ValueError(f'WeightRescaleHook: backend must be one of '
                             f'{BACKENDS}, got {backend!r}')
        if check_finite not in CHECKS:
            raise ValueError(f'WeightRescaleHook: check_finite must be one of '
                             f'{CHECKS}, got {check_finite!r}')
        self.backend, self.check_finite = backend, check_finite
        self._pending_stats = None  # of the last rescale, not yet logged
        self.steps = 0  # real optimizer steps taken
        self.num_rescales = 0
        self.rescaler: Optional[WeightRescaler] = None
        self._runner = None
        self._handle = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        check_patterns_match(self.include, self.exclude,
                             [n for n, _ in self._model(runner).named_parameters()],
                             'WeightRescaleHook')

    def before_train(self, runner) -> None:
        self._runner = runner
        optimizer = runner.optim_wrapper.optimizer
        self._handle = optimizer.register_step_post_hook(self._after_step)
        first_forward_analysis(runner.model).subscribe(self._setup, priority=10)

    def after_train(self, runner) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._pending_stats is not None:  # surface a non-finite norm
            self._pending_stats.norm_mean

    def _setup(self, report: InvarianceReport) -> None:
        """Choose the weights, remove their decay, log the table."""
        runner = self._runner
        chosen = {v.name for v in select(report, self.include, self.exclude,
                                         'WeightRescaleHook',
                                         self.allow_non_invariant)}
        rescaled, refused = [], []
        for v in report.candidates():
            rows = self._rows(v) if v.name in chosen else None
            if rows is not None:
                rescaled.append((v, rows))
            elif v.name in chosen:
                refused.append((v, f'granularity={self.granularity!r} '
                                f'requested, but the weight is {v.kind}-'
                                'invariant only'))
            elif v.invariant:
                refused.append((v, 'not selected by include / exclude'))
            else:
                refused.append((v, v.reason))
        params = dict(self._model(runner).named_parameters())
        self._log_table(runner, rescaled, refused)
        if not rescaled:
            print_log('WeightRescaleHook: the model has no scale-invariant '
                      'weight to rescale; the hook does nothing.',
                      logger='current', level=30)
            return
        claim_groups(runner.optim_wrapper.optimizer,
                     {v.name: params[v.name] for v, _ in rescaled}, 'wrs',
                     'WeightRescaleHook')
        print_log('Optimizer param groups after the WRS decay split:\n' +
                  groups_summary(runner.optim_wrapper.optimizer),
                  logger='current')
        self.rescaler = WeightRescaler(
            [RowEntry(v.name, params[v.name], rows) for v, rows in rescaled],
            backend=self.backend, check_finite=self.check_finite)

    def _rows(self, v) -> Optional[int]:
        if not v.invariant:  # forced with allow_non_invariant
            return 1 if self.granularity == 'tensor' else v.shape[0]
        if self.granularity == 'tensor':
            return 1
        if self.granularity == 'channel' and v.rows != v.shape[0]:
            return None
        return v.rows

    def _log_table(self, runner, rescaled, refused) -> None:
        lines = [f'WeightRescaleHook: rescaling {len(rescaled)} weights every '
                 f'{self.interval} optimizer steps, refused {len(refused)}']
        width = max([len(v.name) for v, _ in rescaled + refused] + [9])
        lines.append(f'{"parameter":<{width}}  {"action":<8}  '
                     f'{"granularity":<11}  reason')
        for v, rows in rescaled:
            gran = granularity_of(rows, v.shape[0])
            if gran == 'group':
                gran = f'group({rows})'
            lines.append(f'{v.name:<{width}}  {"rescale":<8}  {gran:<11}  '
                         f'{v.reason if v.invariant else "FORCED: " + v.reason}')
        for v, why in refused:
            lines.append(f'{v.name:<{width}}  {"refuse":<8}  {"-":<11}  {why}')
        print_log('\n'.join(lines), logger='current')
        if runner.rank == 0 and runner.work_dir:
            records = [(v, why, 0) for v, why in refused]
            records += [(v, v.reason, rows) for v, rows in rescaled]
            with open(osp.join(runner.work_dir, 'wrs_invariance.json'),
                      'w') as f:
                json.dump([
                    dict(name=v.name, shape=list(v.shape), kind=v.kind,
                         granularity=v.granularity, rescaled=rows > 0,
                         rescale_rows=rows, reason=why)
                    for v, why, rows in records
                ], f, indent=1)

    def _in_window(self) -> bool:
        t = self._runner.epoch if self.by_epoch else self._runner.iter
        return t >= self.begin and (self.end is None or t < self.end)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        if (self.rescaler is None or self.steps % self.interval
                or not self._in_window()):
            return
        self._pending_stats = self.rescaler()
        self.num_rescales += 1

    STATS_KEYS = ('train/wrs_norm_mean', 'train/wrs_norm_min',
                  'train/wrs_norm_max', 'train/wrs_zero_rows')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """On log iterations, read the last rescale's statistics (the only
        host synchronisation) into the message hub, or drop stale ones."""
        if not self._logged_now(runner, batch_idx):
            return
        scalars = runner.message_hub.log_scalars
        stats, self._pending_stats = self._pending_stats, None
        if stats is None:
            for key in self.STATS_KEYS:
                scalars.pop(key, None)
            return
        values = (stats.norm_mean, stats.norm_min, stats.norm_max,
                  stats.zero_rows)
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
                return bool(hook.end_of_epoch(runner.train_dataloader,
                                              batch_idx) and
                            (not hook.ignore_last or len(
                                runner.train_dataloader) <= hook.interval))
        return False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('wrs_mm', {})['WeightRescaleHook'] = dict(
            steps=self.steps, num_rescales=self.num_rescales)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:
            return
        state = checkpoint.get('wrs_mm', {}).get('WeightRescaleHook')
        if state is None:
            print_log('WeightRescaleHook: the checkpoint has no WRS state; '
                      'counting optimizer steps from the resumed iteration.',
                      logger='current', level=30)
            self.steps = checkpoint.get('meta', {}).get('iter', 0)
            return
        self.steps = state['steps']
        self.num_rescales = state['num_rescales']
