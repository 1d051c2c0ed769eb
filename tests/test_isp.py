"""ISP analysis pieces: the GGD fit and the streaming patch covariance."""
import pytest
import torch
from scipy.stats import gennorm
from torch import nn
from torch.nn import functional as F

from wrs_mm.core.isp import PatchCovariance, fit_ggd_beta, project_kernels


@pytest.mark.parametrize('beta', [1., 2., 4.])
def test_ggd_fit_recovers_beta(beta):
    x = torch.from_numpy(
        gennorm.rvs(
            beta, scale=0.3, size=200_000, random_state=int(beta * 10)))
    assert fit_ggd_beta(x) == pytest.approx(beta, rel=0.1)


def test_streaming_covariance_equals_direct():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)
    x = torch.randn(5, 3, 9, 9)
    cov = PatchCovariance(conv, max_patches_per_batch=10_000)
    cov.update(x[:2])
    cov.update(x[2:])
    cols = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 27)
    assert cov.count == len(cols)
    assert torch.allclose(cov.sum, cols.double().T @ cols.double(), rtol=1e-10)
    vals, vecs = cov.eig()
    assert torch.all(vals[:-1] >= vals[1:])
    proj = project_kernels(conv.weight, vecs)
    # the eigenbasis is orthonormal: projection keeps each kernel's norm
    assert torch.allclose(
        proj.norm(dim=1),
        conv.weight.detach().double().flatten(1).norm(dim=1))
    # and the conv output is the projected kernel applied to projected patches
    out = conv(x) - conv.bias[None, :, None, None]
    want = (cols.double() @ vecs) @ proj.T
    assert torch.allclose(
        out.permute(0, 2, 3, 1).reshape(-1, 4).double(), want, atol=1e-5)
