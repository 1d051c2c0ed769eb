"""Per-layer weight-norm diagnostics of scale-invariant training.

For a weight ``W`` viewed as rows ``w_j`` (output channels) with gradient
``g_j`` and learning rate ``eta``, one optimizer step is summarised by

* ``||w_j||`` (min / mean / max over channels): Liu et al. 2021 Fig. 2, 3;
* ``cos(w_j, g_j)``: 0 for scale-invariant weights (Liu et al. 2021 Thm 3.1);
* the effective learning rate ``eta / ||w_j||^2`` (Li et al. Sec. 3.2);
* the row std ``sigma_j`` (unbiased, as weight standardisation divides by
  it; min / mean): Li et al. Fig. 6 follows it to zero under plain L2;
* the norm change ``||w_j(t+1)||^2 - ||w_j(t)||^2`` against
  ``eta^2 ||g_j||^2``, equal under plain SGD without weight decay (Liu et al.
  2021 Cor 3.3).

:class:`StepProbe` measures these around one optimizer step with one host
synchronisation.
"""
from typing import Dict, List, Sequence

import torch


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().reshape(t.shape[0], -1)


class StepProbe:
    """Call :meth:`before` right before an optimizer step (gradients final)
    and :meth:`after` right after it; :meth:`before` returns nothing, ``after``
    the per-layer record."""

    def __init__(self, named_params: Sequence):
        self.named_params = list(named_params)
        self._pre: List[tuple] = []

    @torch.no_grad()
    def before(self, lrs: Sequence[float]) -> None:
        self._pre = []
        for (name, p), lr in zip(self.named_params, lrs):
            if p.grad is None:
                continue
            w, g = _rows(p), _rows(p.grad)
            # reductions without full-size temporaries
            self._pre.append((name, p, lr, torch.linalg.vector_norm(w,
                                                                    dim=1)**2,
                              torch.linalg.vector_norm(g, dim=1)**2,
                              torch.einsum('ij,ij->i', w, g)))

    @torch.no_grad()
    def after(self, all_channels: bool = False) -> Dict[str, dict]:
        stats = []
        for name, p, lr, w2, g2, wg in self._pre:
            w2_after = torch.linalg.vector_norm(_rows(p), dim=1)**2
            cos = wg / (w2.sqrt() * g2.sqrt()).clamp_min(1e-30)
            norm = w2.sqrt()
            std = _rows(p).std(dim=1) if p[0].numel() > 1 else norm * 0
            stats.append(
                torch.stack([
                    norm.min(),
                    norm.mean(),
                    norm.max(),
                    cos.abs().mean(),
                    cos.abs().max(), (lr / w2.clamp_min(1e-30)).mean(),
                    (w2_after - w2).sum(), lr**2 * g2.sum(),
                    std.min(),
                    std.mean()
                ]))
        if not stats:
            return {}
        values = torch.stack(stats).cpu().tolist()  # the one host sync
        keys = ('norm_min', 'norm_mean', 'norm_max', 'cos_abs_mean',
                'cos_abs_max', 'eff_lr', 'dnorm2', 'pred_dnorm2', 'std_min',
                'std_mean')
        out = {}
        for (name, p, lr, w2, _, _), vals in zip(self._pre, values):
            rec = dict(zip(keys, vals), lr=lr)
            if all_channels:
                rec['norms'] = w2.sqrt().cpu().tolist()
            out[name] = rec
        self._pre = []
        return out
