"""Bayesian loss for crowd counting from point annotations.

Ma, Wei, Hong, Gong, "Bayesian Loss for Crowd Count Estimation with Point
Supervision", ICCV 2019. For a density map ``D`` (pixels ``x_m`` at the centres
of its cells in input coordinates) and annotated head points ``z_n``, the
likelihood of pixel ``x_m`` under point ``n`` is ``N(x_m; z_n, sigma^2 I)``
and, with a uniform prior, the posterior that ``x_m`` belongs to head ``n`` is

    p(y_n | x_m) = exp(-||x_m - z_n||^2 / 2 sigma^2) / sum_k exp(...),

a softmax over points (computed with log-sum-exp). The expected count of head
``n`` is ``E[c_n] = sum_m p(y_n | x_m) D(x_m)`` and the loss is
``sum_n |1 - E[c_n]|``. Bayesian+ adds a background pseudo-point per pixel at
distance ``d - min_n ||x_m - z_n||`` (the margin ``d`` beyond the nearest head,
paper Eq. 13), whose expected count has target 0. An image without heads has
loss ``|sum_m D(x_m)|``. sigma = 8 as in the authors' code.

:func:`bayesian_loss` is the computation; :class:`BayesianLoss` the module a
model config names (``loss=dict(type='BayesianLoss', sigma=8.)``), as mmdet
heads take ``loss_cls=dict(...)``.
"""
from typing import Optional, Sequence

import torch
from mmengine.registry import MODELS
from torch import nn


def pixel_centres(h: int,
                  w: int,
                  stride: int,
                  device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """``(h*w, 2)`` (x, y) input coordinates of the density cells' centres."""
    ys = torch.arange(h, device=device, dtype=dtype) * stride + stride / 2
    xs = torch.arange(w, device=device, dtype=dtype) * stride + stride / 2
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def posterior(points: torch.Tensor,
              pixels: torch.Tensor,
              sigma: float,
              background_margin: Optional[float] = None) -> torch.Tensor:
    """``(N [+1], M)`` posteriors of the N points (and the background) for
    the M pixels; every column sums to 1."""
    d2 = torch.cdist(points.to(pixels.dtype), pixels)**2  # (N, M)
    if background_margin is not None:
        nearest = d2.min(0, keepdim=True)[0].sqrt()
        bg = (background_margin - nearest).clamp_min(0)**2
        d2 = torch.cat([d2, bg], 0)
    return torch.softmax(-d2 / (2 * sigma**2), dim=0)


def bayesian_loss(density: torch.Tensor,
                  points: Sequence[torch.Tensor],
                  stride: int = 8,
                  sigma: float = 8.,
                  background_margin: Optional[float] = None) -> torch.Tensor:
    """Mean over the batch of the per-image Bayesian (+) loss.

    Args:
        density: ``(B, 1, h, w)`` predicted density (cells of ``stride`` px).
        points: per image, ``(N, 2)`` head points (x, y) in input pixels.
        background_margin: ``d`` for Bayesian+; None for plain Bayesian.
    """
    b, _, h, w = density.shape
    dtype = torch.promote_types(density.dtype, torch.float32)  # not in fp16
    pixels = pixel_centres(h, w, stride, density.device, dtype)
    losses = []
    for dens, pts in zip(density.reshape(b, -1).to(dtype), points):
        if len(pts) == 0:
            losses.append(dens.sum().abs())
            continue
        prob = posterior(
            pts.to(density.device), pixels, sigma, background_margin)
        expected = prob @ dens
        target = torch.ones_like(expected)
        if background_margin is not None:
            target[-1] = 0
        losses.append((target - expected).abs().sum())
    return torch.stack(losses).mean()


@MODELS.register_module()
class BayesianLoss(nn.Module):
    """The Bayesian loss (Bayesian+ with ``background_margin``) as a module.

    Args:
        sigma (float): width of the Gaussian likelihood, in input pixels.
            Defaults to 8.
        background_margin (float, optional): ``d`` of Bayesian+ (input
            pixels); None for the plain Bayesian loss. Defaults to None.
        loss_weight (float): multiplies the loss. Defaults to 1.
    """

    def __init__(self,
                 sigma: float = 8.,
                 background_margin: Optional[float] = None,
                 loss_weight: float = 1.):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f'BayesianLoss.sigma must be > 0, got {sigma}')
        if background_margin is not None and not background_margin > 0:
            raise ValueError('BayesianLoss.background_margin must be None or '
                             f'> 0, got {background_margin}')
        self.sigma, self.background_margin = sigma, background_margin
        self.loss_weight = loss_weight

    def forward(self, density: torch.Tensor, points: Sequence[torch.Tensor],
                stride: int) -> torch.Tensor:
        """See :func:`bayesian_loss`."""
        return self.loss_weight * bayesian_loss(
            density, points, stride, self.sigma, self.background_margin)

    def extra_repr(self) -> str:
        return (f'sigma={self.sigma}, background_margin='
                f'{self.background_margin}, loss_weight={self.loss_weight}')
