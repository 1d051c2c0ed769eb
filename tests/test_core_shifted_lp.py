import pytest
import torch

from wrs_mm.core import (ShiftedLpEntry, ShiftedLpRegularizer, shifted_lp_grad,
                         shifted_lp_value)


@pytest.mark.parametrize('p', [1., 1.5, 2., 3.])
@pytest.mark.parametrize('standardized', [False, True])
def test_grad_matches_autograd(p, standardized):
    torch.manual_seed(0)
    x = torch.randn(6, 27, dtype=torch.float64) * 0.1 + 0.01
    x.requires_grad_(True)
    shifted_lp_value(
        x, eps=0.05, p=p, standardized=standardized).sum().backward()
    g = shifted_lp_grad(x.detach(), eps=0.05, p=p, standardized=standardized)
    assert torch.allclose(g.double(), x.grad, rtol=1e-4, atol=1e-6)


def test_formulas_p2():
    torch.manual_seed(0)
    w = torch.randn(5, 12)
    eps = 0.3
    n = w.norm(dim=1, keepdim=True)
    assert torch.allclose(
        shifted_lp_grad(w, eps), (1 - eps / n) * w, atol=1e-6)
    mu = w.mean(1, keepdim=True)
    sd = w.std(1, keepdim=True)  # unbiased, as ConvWS2d
    want = (1 - eps / sd) * (w - mu) + mu  # PytorchInsight LSGD
    assert torch.allclose(
        shifted_lp_grad(w, eps, standardized=True), want, atol=1e-5)
    val = shifted_lp_value(w, eps, standardized=True)
    assert torch.allclose(
        val, 0.5 * (11 * (sd[:, 0] - eps)**2 + 12 * mu[:, 0]**2), atol=1e-5)


def test_bad_args():
    with pytest.raises(ValueError, match='eps'):
        shifted_lp_value(torch.ones(2, 2), eps=-1)
    with pytest.raises(ValueError, match='p must be'):
        shifted_lp_grad(torch.ones(2, 2), eps=0, p=0.5)
    with pytest.raises(ValueError, match='mode'):
        ShiftedLpRegularizer([], eps=0, mode='both')


def test_coupled_and_decoupled_steps():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
    b = torch.nn.Parameter(torch.randn(4, 6))
    a.grad, b.grad = torch.zeros_like(a), torch.randn_like(b)
    g0 = b.grad.clone()
    reg = ShiftedLpRegularizer(
        [ShiftedLpEntry('a', a, 0.1, True),
         ShiftedLpEntry('b', b, 0.2)],
        eps=0.5)
    reg.step_()
    assert torch.allclose(
        a.grad.view(8, -1),
        0.1 * shifted_lp_grad(a.detach().view(8, -1), 0.5, standardized=True))
    assert torch.allclose(b.grad, g0 + 0.2 * shifted_lp_grad(b.detach(), 0.5))
    dec = ShiftedLpRegularizer([ShiftedLpEntry('b', b, 0.2)],
                               eps=0.5,
                               mode='decoupled')
    before = b.detach().clone()
    dec.step_([0.1])
    assert torch.allclose(b.detach(),
                          before - 0.1 * 0.2 * shifted_lp_grad(before, 0.5))


def test_eps_keeps_norm_away_from_zero():
    """Pure regularization dynamics: plain L2 (eps=0) collapses the norm,
    the shifted one converges to eps."""
    torch.manual_seed(0)
    w0 = torch.randn(16, 9)
    out = {}
    for eps in (0., 0.5):
        w = torch.nn.Parameter(w0.clone())
        reg = ShiftedLpRegularizer([ShiftedLpEntry('w', w, 1.)],
                                   eps=eps,
                                   mode='decoupled')
        for _ in range(2000):
            reg.step_([0.01])
        out[eps] = w.detach().norm(dim=1)
    assert out[0.].max() < 1e-6
    assert torch.allclose(out[0.5], torch.full((16, ), 0.5), atol=1e-4)


def test_coupled_step_without_gradients_is_a_no_op():
    w = torch.nn.Parameter(torch.randn(4, 6))
    before = w.detach().clone()
    for p in (2., 3.):
        ShiftedLpRegularizer([ShiftedLpEntry('w', w, 0.1)], eps=0.5,
                             p=p).step_()
    assert w.grad is None and torch.equal(w.detach(), before)
