"""Framework-free core of wrs_mm: needs PyTorch and numpy, never mmengine
(usable from Detectron2 or a plain training loop).

* :func:`analyze_invariance` / :func:`verify_invariance`: which weights the
  loss is invariant to rescaling, per channel / group / tensor, and a
  numerical check; the report holds a :class:`ParamInvariance` per
  parameter, its :class:`Reason` code what decisions read;
* :class:`WeightRescaler`: weight rescaling (WRS) to unit norm, batched;
* :class:`ShiftedLpRegularizer`: the eps-shifted Lp regularizer.
"""
from .invariance import (InvarianceRecorder, analyze_invariance, classify,
                         loss_tensors)
from .rescale import RescaleStats, WeightRescaler, rescale_optimizer_state
from .rows import RowEntry
from .shifted_lp import (ShiftedLpEntry, ShiftedLpRegularizer, shifted_lp_grad,
                         shifted_lp_value)
from .verdicts import InvarianceReport, ParamInvariance, Reason, Verdict
from .verify import VerifyResult, verify_invariance

__all__ = [
    'InvarianceRecorder', 'InvarianceReport', 'ParamInvariance', 'Reason',
    'Verdict', 'analyze_invariance', 'classify', 'loss_tensors',
    'RescaleStats', 'rescale_optimizer_state', 'WeightRescaler', 'RowEntry',
    'ShiftedLpEntry', 'ShiftedLpRegularizer', 'shifted_lp_grad',
    'shifted_lp_value', 'VerifyResult', 'verify_invariance'
]
