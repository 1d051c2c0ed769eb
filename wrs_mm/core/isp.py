"""Input-space projection (ISP) of conv kernels and the generalized-Gaussian
shape of their parameters.

Liu et al. 2021, Sec. 4.2 / Fig. 5-6: SGD only moves a kernel inside the span
of its input patches, so, projected on the eigenvectors of the input-patch
covariance, well-regularised kernels have few large components (a sparse,
peaked distribution: small generalized-Gaussian shape beta), while noise left
in the orthogonal complement makes the raw parameters look Gaussian (beta near
2).

* :class:`PatchCovariance` accumulates ``sum x x^T`` of the im2col patches
  (dimension ``in_channels * kh * kw``) of a conv's input, batch by batch, in
  float64, so memory is one d x d matrix whatever the number of patches;
* :func:`project_kernels` expresses each output channel's kernel in the
  covariance eigenbasis (strongest directions first);
* :func:`fit_ggd_beta` estimates the shape beta of a zero-mean generalized
  Gaussian ``p(x) ~ exp(-|x/a|^beta)`` by matching
  ``(E|x|)^2 / E[x^2] = Gamma(2/b)^2 / (Gamma(1/b) Gamma(3/b))``, which is
  monotonic in beta (bisection on log beta).
"""
import math

import torch
from torch import nn
from torch.nn import functional as F


class PatchCovariance:
    """Streaming second moment of a conv's input patches."""

    def __init__(self, conv: nn.Conv2d, max_patches_per_batch: int = 4096):
        if conv.groups != 1:
            raise ValueError(f'ISP needs a dense conv (groups=1), got groups='
                             f'{conv.groups}')
        self.conv = conv
        self.dim = conv.in_channels * conv.kernel_size[0] * \
            conv.kernel_size[1]
        self.sum = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        self.count = 0
        self.max_patches = max_patches_per_batch

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        c = self.conv
        gen = torch.Generator().manual_seed(self.count)
        for sample in x.split(1):  # one image at a time bounds memory
            cols = F.unfold(sample.float(), c.kernel_size, c.dilation,
                            c.padding, c.stride)[0].T  # (L, d)
            if len(cols) > self.max_patches:
                keep = torch.randperm(
                    len(cols), generator=gen)[:self.max_patches]
                cols = cols[keep.to(cols.device)]
            self.sum += (cols.T.double() @ cols.double()).cpu()
            self.count += len(cols)

    def eig(self):
        """Eigenvalues (descending) and eigenvectors (columns)."""
        if not self.count:
            raise RuntimeError('PatchCovariance: no patches collected')
        vals, vecs = torch.linalg.eigh(self.sum / self.count)
        return vals.flip(0), vecs.flip(1)


def project_kernels(weight: torch.Tensor,
                    eigvecs: torch.Tensor) -> torch.Tensor:
    """``(out_channels, d)`` coordinates of each kernel in the eigenbasis."""
    return weight.detach().double().reshape(weight.shape[0], -1).cpu() @ \
        eigvecs


def _ratio(beta: float) -> float:
    lg = math.lgamma
    return math.exp(2 * lg(2 / beta) - lg(1 / beta) - lg(3 / beta))


def fit_ggd_beta(x: torch.Tensor, lo: float = 0.05, hi: float = 20.) -> float:
    """Shape beta of a zero-mean generalized Gaussian fitted to ``x``."""
    x = x.detach().double().flatten()
    r = float(x.abs().mean()**2 / (x * x).mean())
    a, b = math.log(lo), math.log(hi)
    if r <= _ratio(lo):
        return lo
    if r >= _ratio(hi):
        return hi
    for _ in range(100):
        m = (a + b) / 2
        if _ratio(math.exp(m)) < r:
            a = m
        else:
            b = m
    return math.exp((a + b) / 2)
