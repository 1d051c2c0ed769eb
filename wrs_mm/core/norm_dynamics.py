"""Weight-norm dynamics recorded over a training run, whichever framework
drives it (mmengine's and Detectron2's ``NormDynamicsHook``): the
:class:`~wrs_mm.core.diagnostics.StepProbe` of the selected layers around
the first real optimizer step at or after every multiple of ``interval``
iterations, before WRS rescales
(:data:`~wrs_mm.core.plugin.POST_STEP_ORDER`)."""
from typing import Optional

from .diagnostics import StepProbe
from .options import boolean, integer, validate
from .param_groups import group_index
from .plugin import NORM_DYNAMICS, TrainingPlugin
from .selection import check_patterns_match, compile_patterns, selected

#: the layer averages an adapter puts on its log line
LOG_STATS = ('norm_mean', 'cos_abs_mean', 'eff_lr')


class NormDynamics:
    """Records per layer every ``interval`` iterations; an adapter says what
    the iteration is (:meth:`iteration`) and where a record goes
    (:meth:`publish`). ``records`` counts them."""
    OWNER = 'NormDynamicsHook'
    #: what each option accepts
    OPTIONS = dict(interval=integer(1), all_channels=boolean())

    def __init__(self,
                 interval: int = 50,
                 include=None,
                 exclude=None,
                 all_channels: bool = False):
        validate(self.OWNER, locals(), self.OPTIONS)
        self.interval = interval
        self.include = compile_patterns(include, f'{self.OWNER}.include')
        self.exclude = compile_patterns(exclude, f'{self.OWNER}.exclude')
        self.all_channels = all_channels
        self.records = 0
        self._next = 0
        self._active = False
        self._probe: Optional[StepProbe] = None
        self.plugin: Optional[TrainingPlugin] = None

    def iteration(self) -> int:
        """The training iteration now (0-based)."""
        raise NotImplementedError

    def publish(self, iteration: int, layers: dict) -> None:
        """Hand on the record ``{layer: {stat: value}}`` of the step that
        ended ``iteration`` (1-based)."""
        raise NotImplementedError

    def select_layers(self, model) -> None:
        """Probe the trainable weights of >= 2 dims of ``model`` matched by
        ``include`` / ``exclude`` (a pattern matching none is an error)."""
        named = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad and p.dim() >= 2]
        check_patterns_match(self.include, self.exclude, [n for n, _ in named],
                             self.OWNER)
        self._probe = StepProbe([(n, p) for n, p in named
                                 if selected(n, self.include, self.exclude)])

    def attach(self, plugin: TrainingPlugin, start_iter: int) -> None:
        """Record around real optimizer steps from ``start_iter`` on."""
        if self._probe is None:
            self.select_layers(plugin.model)
        self.plugin = plugin
        self._next = (start_iter + self.interval - 1) // self.interval \
            * self.interval
        plugin.on_step(NORM_DYNAMICS, pre=self._pre, post=self._post)

    def detach(self) -> None:
        if self.plugin is not None:
            self.plugin.remove(NORM_DYNAMICS)

    def _pre(self) -> None:
        self._active = self.iteration() >= self._next
        if self._active:  # the groups now: the analysis moves weights
            index = group_index(self.plugin.optimizer)
            self._probe.before(
                [index[id(p)]['lr'] for _, p in self._probe.named_params])

    def _post(self) -> None:
        if not self._active:
            return
        self._active = False
        it = self.iteration()
        self._next = (it // self.interval + 1) * self.interval
        layers = self._probe.after(self.all_channels)
        if layers:
            self.records += 1
            self.publish(it + 1, layers)


def layer_means(layers: dict) -> dict:
    """The :data:`LOG_STATS` averaged over the layers of a record."""
    return {
        stat: sum(v[stat] for v in layers.values()) / len(layers)
        for stat in LOG_STATS
    }


def flat_scalars(layers: dict, prefix: str = 'norm/') -> dict:
    """``{prefix<layer>/<stat>: value}`` of a record (channel lists left
    out)."""
    return {
        f'{prefix}{n}/{k}': v
        for n, rec in layers.items()
        for k, v in rec.items() if k != 'norms'
    }
