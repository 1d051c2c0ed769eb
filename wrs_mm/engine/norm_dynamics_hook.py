"""mmengine adapter for :mod:`wrs_mm.core.diagnostics`."""
import json
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..core.diagnostics import StepProbe
from .config_checks import check_resume_loadable
from .options import boolean, integer, validate
from .param_groups import group_index
from .plugin import (NORM_DYNAMICS, WRSPlugin, check_compile, check_unsharded,
                     unwrap)
from .selection import check_patterns_match, compile_patterns, selected


@HOOKS.register_module()
class NormDynamicsHook(Hook):
    """Record the weight-norm dynamics of selected layers every ``interval``
    iterations (at the first optimizer step at or after each multiple).

    Per layer (per output channel, summarised): norm min / mean / max, mean and
    max ``|cos(w, grad)|`` (0 for scale-invariant weights, Liu et al. 2021 Thm
    3.1), the effective learning rate ``lr / ||w||^2`` (Li et al. Sec. 3.2),
    and the step's ``sum_j ||w_j(t+1)||^2 - ||w_j(t)||^2`` next to ``lr^2
    ||grad||^2`` (equal under plain SGD, Liu et al. 2021 Cor 3.3). Measured
    right before and after real optimizer steps (final, unscaled gradients,
    after the shifted regularizer's; no record for skipped AMP steps), before
    WRS rescales (:data:`~wrs_mm.engine.plugin.POST_STEP_ORDER`).

    Outputs: layer averages ``norm_mean``, ``cos_abs_mean``, ``eff_lr`` in
    ``runner.message_hub`` (the log line); every layer's values through
    ``runner.visualizer.add_scalars`` (TensorBoard / W&B backends, key
    ``norm/<layer>/<stat>``); and one JSON line per record in
    ``<work_dir>/<out_file>``: ``{"iter": i, "layers": {name: {stat: value}}}``
    with the stats above (``norms``: every channel when ``all_channels``).

    Args:
        interval (int): iterations between records. Defaults to 50.
        include (str | list[str], optional): regexes (``re.search``) on
            parameter names of the layers to record. None: every trainable
            weight of >= 2 dims.
        exclude (str | list[str], optional): regexes of weights not to
            record.
        all_channels (bool): also store each channel's norm. Defaults to False.
        out_file (str): file name in the work dir. Defaults to
            'norm_dynamics.jsonl'.
    """
    priority = 'HIGH'  # its scalars are in the hub before LoggerHook writes

    #: what each option accepts
    OPTIONS = dict(interval=integer(1), all_channels=boolean())

    def __init__(self,
                 interval: int = 50,
                 include=None,
                 exclude=None,
                 all_channels: bool = False,
                 out_file: str = 'norm_dynamics.jsonl'):
        validate('NormDynamicsHook', locals(), self.OPTIONS)
        self.interval = interval
        self.include = compile_patterns(include, 'NormDynamicsHook.include')
        self.exclude = compile_patterns(exclude, 'NormDynamicsHook.exclude')
        self.all_channels = all_channels
        self.out_file = out_file
        self.records = 0
        self._next = 0
        self._active = False
        self._probe: Optional[StepProbe] = None
        self._plugin = None
        self._runner = None

    def before_run(self, runner) -> None:
        check_unsharded(runner.model)
        check_compile(runner)
        check_resume_loadable(runner, 'NormDynamicsHook')
        named = [(n, p) for n, p in unwrap(runner.model).named_parameters()
                 if p.requires_grad and p.dim() >= 2]
        check_patterns_match(self.include, self.exclude, [n for n, _ in named],
                             'NormDynamicsHook')
        named = [(n, p) for n, p in named
                 if selected(n, self.include, self.exclude)]
        self._probe = StepProbe(named)
        self._path = osp.join(runner.work_dir, self.out_file)

    def before_train(self, runner) -> None:
        self._runner = runner
        self._next = (runner.iter + self.interval - 1) // self.interval \
            * self.interval
        self._plugin = WRSPlugin.of(runner.optim_wrapper, runner.model)
        self._plugin.on_step(NORM_DYNAMICS, pre=self._pre, post=self._post)

    def after_train(self, runner) -> None:
        if self._plugin is not None:
            self._plugin.remove(NORM_DYNAMICS)

    def _pre(self) -> None:
        self._active = self._runner.iter >= self._next
        if self._active:  # the groups now: the analysis moves weights
            index = group_index(self._plugin.optimizer)
            self._probe.before(
                [index[id(p)]['lr'] for _, p in self._probe.named_params])

    def _post(self) -> None:
        if not self._active:
            return
        self._active = False
        it = self._runner.iter
        self._next = (it // self.interval + 1) * self.interval
        layers = self._probe.after(self.all_channels)
        if not layers:
            return
        self.records += 1
        hub = self._runner.message_hub
        for stat in ('norm_mean', 'cos_abs_mean', 'eff_lr'):
            hub.update_scalar(
                f'train/{stat}',
                sum(v[stat] for v in layers.values()) / len(layers))
        self._runner.visualizer.add_scalars(
            {
                f'norm/{n}/{k}': v
                for n, rec in layers.items()
                for k, v in rec.items() if k != 'norms'
            },
            step=it + 1)
        if self._runner.rank == 0:
            with open(self._path, 'a') as f:
                f.write(json.dumps(dict(iter=it + 1, layers=layers)) + '\n')


def read_norm_dynamics(path: str):
    """The records of a ``norm_dynamics.jsonl`` file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
