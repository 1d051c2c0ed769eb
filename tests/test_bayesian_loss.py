"""The vectorised Bayesian loss against a direct small-case computation."""
import math

import pytest
import torch

from wrs_mm.counting.bayesian_loss import bayesian_loss, posterior


def _direct(density, pts, stride, sigma, margin):
    """Plain loops over points and pixels, straight from the formulas."""
    h, w = density.shape
    pix = [((j + 0.5) * stride, (i + 0.5) * stride, density[i, j].item())
           for i in range(h) for j in range(w)]
    if not pts:
        return abs(sum(d for _, _, d in pix))
    expected = [0.] * (len(pts) + (margin is not None))
    for x, y, d in pix:
        dist2 = [(x - px)**2 + (y - py)**2 for px, py in pts]
        if margin is not None:
            near = math.sqrt(min(dist2))
            dist2.append(max(margin - near, 0)**2)
        lik = [math.exp(-q / (2 * sigma**2)) for q in dist2]
        z = sum(lik)
        for n, l in enumerate(lik):
            expected[n] += l / z * d
    target = [1.] * len(pts) + ([0.] if margin is not None else [])
    return sum(abs(t - e) for t, e in zip(target, expected))


@pytest.mark.parametrize('margin', [None, 20.])
def test_matches_direct_computation(margin):
    torch.manual_seed(0)
    density = torch.rand(2, 1, 4, 5, dtype=torch.float64)
    pts = [[(3., 5.), (30., 20.), (12., 28.)], []]
    got = bayesian_loss(
        density,
        [torch.tensor(p, dtype=torch.float64).reshape(-1, 2) for p in pts],
        stride=8,
        sigma=8.,
        background_margin=margin)
    want = sum(
        _direct(density[i, 0], pts[i], 8, 8., margin) for i in range(2)) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_stable_far_from_every_point():
    # distances of 1e4 px: naive exp underflows to 0/0, log-sum-exp does not
    pts = torch.tensor([[1e4, 1e4], [-1e4, 5e3]])
    prob = posterior(pts, torch.tensor([[0., 0.], [8., 8.]]), 8.)
    assert torch.isfinite(prob).all()
    assert torch.allclose(prob.sum(0), torch.ones(2))
    density = torch.rand(1, 1, 2, 2, requires_grad=True)
    loss = bayesian_loss(density, [pts], background_margin=100.)
    loss.backward()
    assert torch.isfinite(density.grad).all()


def test_perfect_density_has_zero_loss():
    """One point per far-apart cell, density 1 at exactly that cell."""
    density = torch.zeros(1, 1, 3, 3)
    density[0, 0, 0, 0] = density[0, 0, 2, 2] = 1
    pts = torch.tensor([[4., 4.], [20., 20.]])
    assert bayesian_loss(density, [pts], sigma=1.).item() < 1e-6


@pytest.mark.parametrize('margin', [None, 20.])
def test_registered_module_from_config_matches_direct_computation(margin):
    """``loss=dict(type='BayesianLoss', ...)`` as CSRNet's config gives it."""
    from mmengine.registry import MODELS

    import wrs_mm  # noqa: F401  (registers BayesianLoss)
    loss = MODELS.build(
        dict(
            type='BayesianLoss',
            sigma=8.,
            background_margin=margin,
            loss_weight=2.))
    torch.manual_seed(0)
    density = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    pts = [(3., 5.), (30., 20.)]
    got = loss(density, [torch.tensor(pts, dtype=torch.float64)], 8)
    want = 2 * _direct(density[0, 0], pts, 8, 8., margin)
    assert got.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize('cfg, match', [
    (dict(sigma=0.), 'BayesianLoss.sigma must be > 0'),
    (dict(background_margin=-1.), 'BayesianLoss.background_margin'),
])
def test_module_rejects_bad_arguments(cfg, match):
    from wrs_mm.counting import BayesianLoss
    with pytest.raises(ValueError, match=match):
        BayesianLoss(**cfg)


def test_csrnet_trains_with_the_configured_loss():
    """CSRNet's loss comes from its ``loss`` config: Bayesian+ and plain
    Bayesian give different values on the same density."""
    from wrs_mm.counting import CSRNet

    class Sample:
        gt_points = torch.tensor([[10., 12.], [40., 30.]])

    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    losses = {}
    for margin in (None, 50.):
        torch.manual_seed(0)
        net = CSRNet(
            loss=dict(type='BayesianLoss', background_margin=margin)).train()
        out = net(x, [Sample()], mode='loss')
        losses[margin] = out['loss_bayes'].item()
        want = net.loss(net.density(x), [Sample.gt_points], 8).item()
        assert losses[margin] == pytest.approx(want, rel=1e-5)
    assert losses[None] != pytest.approx(losses[50.], rel=1e-3)
