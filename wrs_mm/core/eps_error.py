"""How far a rescale moves a network's output through the normalisation eps.

A normalisation divides by ``sqrt(var + eps)``: after ``w_j <- w_j / s_j``
the channel's variance is ``var_j / s_j^2`` and its output is multiplied by
``sqrt((var_j + eps) / (var_j + s_j^2 eps))`` (Liu et al. 2021's invariance
holds exactly only for eps = 0). A weight-standardised layer divides by
``std_j + eps``: the factor is ``(std_j + eps) / (std_j + s_j eps)``. The
static estimate at the analysed forward is in
:class:`~wrs_mm.core.ParamInvariance` (``eps_error``, ``rescale_change``);
:class:`RescaleChangeMeter` measures it at every rescale, on the device.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .rescale import RescaleStats


@dataclass
class EpsTerm:
    """What divides a weight's output: ``norms`` are (live per-channel
    variance, eps) pairs of the normalisations it feeds (a BatchNorm's
    ``running_var``), or ``ws_eps`` for a weight-standardised layer."""
    norms: List[Tuple[torch.Tensor, float]] = field(default_factory=list)
    ws_eps: Optional[float] = None


class RescaleChangeMeter:
    """The largest relative output change, over every rescaled row, that a
    rescale caused through eps (a device scalar; no host synchronisation).

    Args:
        terms: ``{weight name: EpsTerm}``; weights without a term (GroupNorm
            and LayerNorm keep no running statistics) are not measured.
    """

    def __init__(self, terms: Dict[str, EpsTerm]):
        self.terms = terms

    def __len__(self) -> int:
        return len(self.terms)

    @torch.no_grad()
    def __call__(self, stats: RescaleStats) -> Optional[torch.Tensor]:
        """After the rescale that returned ``stats``."""
        out = []
        for entries, scales in stats.row_scales():
            for e, s in zip(entries, scales):
                term = self.terms.get(e.name)
                if term is None:
                    continue
                s = s.reshape(-1).float()
                if term.ws_eps is not None:
                    eps = term.ws_eps
                    std = s * e.param.detach().float().flatten(1).std(1)
                    out.append(
                        ((std + eps) / (std + s * eps)).sub(1).abs().max())
                for var, eps in term.norms:
                    var = var.float()
                    out.append(((var + eps) /
                                (var + s * s * eps)).sqrt().sub(1).abs().max())
        return torch.stack(out).max() if out else None
