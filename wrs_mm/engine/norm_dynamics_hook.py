"""mmengine adapter for :mod:`wrs_mm.core.norm_dynamics`."""
import json
import os.path as osp

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..core.norm_dynamics import NormDynamics, flat_scalars, layer_means
from .config_checks import check_resume_loadable
from .plugin import WRSPlugin, check_compile, check_unsharded, unwrap


@HOOKS.register_module()
class NormDynamicsHook(NormDynamics, Hook):
    """Record the weight-norm dynamics of selected layers every ``interval``
    iterations (at the first optimizer step at or after each multiple).

    Per layer (per output channel, summarised): norm min / mean / max, mean and
    max ``|cos(w, grad)|`` (0 for scale-invariant weights, Liu et al. 2021 Thm
    3.1), the effective learning rate ``lr / ||w||^2`` (Li et al. Sec. 3.2),
    and the step's ``sum_j ||w_j(t+1)||^2 - ||w_j(t)||^2`` next to ``lr^2
    ||grad||^2`` (equal under plain SGD, Liu et al. 2021 Cor 3.3). Measured
    right before and after real optimizer steps (final, unscaled gradients,
    after the shifted regularizer's; no record for skipped AMP steps), before
    WRS rescales (:data:`~wrs_mm.core.plugin.POST_STEP_ORDER`).

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

    def __init__(self,
                 interval: int = 50,
                 include=None,
                 exclude=None,
                 all_channels: bool = False,
                 out_file: str = 'norm_dynamics.jsonl'):
        super().__init__(interval, include, exclude, all_channels)
        self.out_file = out_file
        self._runner = None

    def before_run(self, runner) -> None:
        """Refuse what it cannot run under; choose the layers."""
        check_unsharded(runner.model)
        check_compile(runner)
        check_resume_loadable(runner, self.OWNER)
        self.select_layers(unwrap(runner.model))
        self._path = osp.join(runner.work_dir, self.out_file)

    def before_train(self, runner) -> None:
        """Record around the optimizer steps of the run's
        :class:`~wrs_mm.engine.plugin.WRSPlugin`."""
        self._runner = runner
        self.attach(
            WRSPlugin.of(runner.optim_wrapper, runner.model), runner.iter)

    def after_train(self, runner) -> None:
        """Detach from the plugin (which then puts back the optimizer's
        ``step`` it found)."""
        self.detach()

    def iteration(self) -> int:
        """The run's iteration, which a record is filed under."""
        return self._runner.iter

    def publish(self, iteration: int, layers: dict) -> None:
        """Layer averages to the message hub, every layer to the
        visualizer, the record to the JSON-lines file (rank 0)."""
        hub = self._runner.message_hub
        for stat, value in layer_means(layers).items():
            hub.update_scalar(f'train/{stat}', value)
        self._runner.visualizer.add_scalars(
            flat_scalars(layers), step=iteration)
        if self._runner.rank == 0:
            with open(self._path, 'a') as f:
                f.write(json.dumps(dict(iter=iteration, layers=layers)) + '\n')


def read_norm_dynamics(path: str):
    """The records of a ``norm_dynamics.jsonl`` file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
