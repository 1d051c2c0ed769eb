"""The eps-shifted Lp regularizer over a training run, whichever framework
drives it (mmengine's ``paramwise_cfg.shifted_reg``, Detectron2's
``ShiftedLpHook``): Li, Chen, Yang, Sec. 5; the regularizer itself is
:class:`~wrs_mm.core.ShiftedLpRegularizer`.

:class:`ShiftedRegularization` checks the options, chooses the weights from
the first forward's analysis, moves them into the no-decay param groups
(:func:`~wrs_mm.core.param_groups.claim_groups`) and applies the regularizer
right before every real optimizer step (so it sees unscaled AMP gradients,
is skipped with a skipped AMP step and runs once per accumulated update).
"""
import logging
from typing import Optional

from .options import at_least, boolean, validate
from .param_groups import (CONFIGURED_DECAY, ROLE_SHIFTED, claim_groups,
                           groups_summary)
from .plugin import SHIFTED_REG, TrainingPlugin, log_std
from .selection import check_patterns_match, compile_patterns, select
from .shifted_lp import ShiftedLpEntry, ShiftedLpRegularizer, check_options

#: the options and their defaults
SHIFTED_DEFAULTS = dict(
    eps=1e-3,
    p=2.,
    mode='coupled',
    weight_decay=None,
    include=None,
    exclude=None,
    allow_non_invariant=False,
    backend='auto',
    self_check=True)
#: what the options core's ``check_options`` leaves accept
SHIFTED_OPTIONS = dict(
    weight_decay=at_least(0, none=True),
    allow_non_invariant=boolean(),
    self_check=boolean())


def check_shifted_cfg(cfg: dict, owner: str) -> dict:
    """``cfg`` with the defaults filled in and the patterns compiled, or a
    clear error naming ``owner.<key>``."""
    unknown = set(cfg) - set(SHIFTED_DEFAULTS)
    if unknown:
        raise KeyError(f'{owner}: unknown keys {sorted(unknown)}; '
                       f'accepted: {tuple(SHIFTED_DEFAULTS)}')
    cfg = dict(SHIFTED_DEFAULTS, **cfg)
    check_options(cfg['eps'], cfg['p'], cfg['mode'], cfg['backend'], owner)
    validate(owner, cfg, SHIFTED_OPTIONS)
    for key in ('include', 'exclude'):
        cfg[key] = compile_patterns(cfg[key], f'{owner}.{key}')
    return cfg


class ShiftedRegularization:
    """The shifted regularizer at run time.

    Args:
        cfg (dict): the options (:data:`SHIFTED_DEFAULTS`), as returned by
            :func:`check_shifted_cfg`.
        owner (str): the config key or hook the errors and the log name.
        fix (str): what to do when a chosen weight shares its param group
            with weights that keep their decay (the adapter's way of
            building the optimizer's groups).
        log (callable): ``log(message, level)``, the run's log (as
            :meth:`WeightRescaling.log <wrs_mm.core.weight_rescaling.
            WeightRescaling.log>`).
    """

    def __init__(self, cfg: dict, owner: str, fix: str, log=log_std):
        self.cfg = cfg
        self.owner, self.fix = owner, fix
        self.log = log
        self.regularizer: Optional[ShiftedLpRegularizer] = None
        self.groups = []
        self.plugin: Optional[TrainingPlugin] = None

    def attach(self, plugin: TrainingPlugin) -> None:
        """Choose the weights at the plugin's first-forward analysis and
        regularize before every real optimizer step from now on."""
        self.plugin = plugin
        check_patterns_match(self.cfg['include'], self.cfg['exclude'],
                             [n for n, _ in plugin.model.named_parameters()],
                             self.owner)
        plugin.on_analysis(SHIFTED_REG, self.setup)
        plugin.on_step(SHIFTED_REG, pre=self.step)

    def setup(self, report) -> None:
        cfg, owner = self.cfg, self.owner
        chosen = select(report, cfg['include'], cfg['exclude'], owner,
                        cfg['allow_non_invariant'])
        if not chosen:
            self.log(f'{owner}: no weight to regularize; it does nothing.',
                     logging.WARNING)
            return
        params = dict(self.plugin.model.named_parameters())
        optimizer = self.plugin.optimizer
        groups = claim_groups(optimizer,
                              {v.name: params[v.name]
                               for v in chosen}, ROLE_SHIFTED, owner, self.fix)
        entries = [
            ShiftedLpEntry(
                v.name,
                params[v.name],
                groups[v.name][CONFIGURED_DECAY]
                if cfg['weight_decay'] is None else cfg['weight_decay'],
                standardized=v.kind == 'ws') for v in chosen
        ]
        self.regularizer = ShiftedLpRegularizer(
            entries,
            cfg['eps'],
            cfg['p'],
            cfg['mode'],
            cfg['backend'],
            self_check=cfg['self_check'])
        self.groups = [groups[n] for n in self.regularizer.names]
        self.log(
            f"{owner}: eps-shifted L{cfg['p']:g} ({cfg['mode']}, "
            f"eps={cfg['eps']:g}) on {len(entries)} weights "
            f'({sum(e.standardized for e in entries)} weight-standardised); '
            'their weight_decay is set to 0. Param groups:\n' +
            groups_summary(optimizer))

    def step(self) -> None:
        """Apply the regularizer (before an optimizer step)."""
        if self.regularizer is None:
            return
        lrs = [g['lr'] for g in self.groups]
        self.regularizer.step_(lrs if self.cfg['mode'] ==
                               'decoupled' else None)
