"""yacs configs: the ``WRS`` keys, and the optimizer and hooks they ask for
(``tools/detectron2/train_net.py`` calls these three, as Detectron2's
projects call their ``add_*_config``)."""
import torch
from detectron2.config import CfgNode as CN
from detectron2.solver.build import maybe_add_gradient_clipping

from .hooks import NormDynamicsHook, ShiftedLpHook, WeightRescaleHook
from .optimizer import get_wrs_optimizer_params


def add_wrs_config(cfg) -> None:
    """Add ``cfg.WRS`` (all off) to a Detectron2 yacs config, before
    ``merge_from_file``::

        WRS:
          ENABLED: True          # WeightRescaleHook
          INTERVAL: 10           # tau, in optimizer steps
          TARGET_NORM: "1.0"     # a number > 0, or "init"
          INCLUDE: []            # regexes on parameter names; [] = all
          EXCLUDE: []
          GRANULARITY: "auto"    # "auto", "channel" or "tensor"
          MAX_INVARIANCE_ERROR: 0.01
          SHIFTED_LP:            # ShiftedLpHook
            ENABLED: False
            EPS: 0.001
            P: 2.0
            MODE: "coupled"      # or "decoupled"
            WEIGHT_DECAY: -1.0   # lambda; < 0: SOLVER.WEIGHT_DECAY
          NORM_DYNAMICS:         # NormDynamicsHook
            ENABLED: False
            INTERVAL: 50
    """
    cfg.WRS = CN()
    cfg.WRS.ENABLED = False
    cfg.WRS.INTERVAL = 10
    cfg.WRS.TARGET_NORM = '1.0'
    cfg.WRS.INCLUDE = []
    cfg.WRS.EXCLUDE = []
    cfg.WRS.GRANULARITY = 'auto'
    cfg.WRS.MAX_INVARIANCE_ERROR = 1e-2
    cfg.WRS.SHIFTED_LP = CN()
    cfg.WRS.SHIFTED_LP.ENABLED = False
    cfg.WRS.SHIFTED_LP.EPS = 1e-3
    cfg.WRS.SHIFTED_LP.P = 2.0
    cfg.WRS.SHIFTED_LP.MODE = 'coupled'
    cfg.WRS.SHIFTED_LP.WEIGHT_DECAY = -1.0
    cfg.WRS.NORM_DYNAMICS = CN()
    cfg.WRS.NORM_DYNAMICS.ENABLED = False
    cfg.WRS.NORM_DYNAMICS.INTERVAL = 50


def _target_norm(value: str):
    if value == 'init':
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError('WRS.TARGET_NORM must be a number > 0 (as a string, '
                         f'e.g. "1.0") or "init", got {value!r}') from None


def build_wrs_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``detectron2.solver.build_optimizer`` with
    :func:`~wrs_mm.detectron2.get_wrs_optimizer_params` (the same SGD, the
    same groups, plus the no-decay groups of the hooks)."""
    params = get_wrs_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
    return maybe_add_gradient_clipping(
        cfg,
        torch.optim.SGD(
            params,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            foreach=True))


def build_wrs_hooks(cfg) -> list:
    """The hooks ``cfg.WRS`` enables (none by default)."""
    wrs, out = cfg.WRS, []
    patterns = dict(
        include=list(wrs.INCLUDE) or None, exclude=list(wrs.EXCLUDE) or None)
    if wrs.SHIFTED_LP.ENABLED:
        lp = wrs.SHIFTED_LP
        out.append(
            ShiftedLpHook(
                eps=lp.EPS,
                p=lp.P,
                mode=lp.MODE,
                weight_decay=None if lp.WEIGHT_DECAY < 0 else lp.WEIGHT_DECAY,
                **patterns))
    if wrs.ENABLED:
        out.append(
            WeightRescaleHook(
                interval=wrs.INTERVAL,
                target_norm=_target_norm(wrs.TARGET_NORM),
                output_dir=cfg.OUTPUT_DIR,
                granularity=wrs.GRANULARITY,
                max_invariance_error=wrs.MAX_INVARIANCE_ERROR,
                **patterns))
    if wrs.NORM_DYNAMICS.ENABLED:
        out.append(NormDynamicsHook(interval=wrs.NORM_DYNAMICS.INTERVAL))
    return out
