"""WRSOptimWrapperConstructor: param groups, and the eps-shifted Lp
regularizer applied per optimizer step from config alone."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from torch import nn
from torch.nn import functional as F

import wrs_mm  # noqa: F401
from wrs_mm.core import shifted_lp_grad
from wrs_mm.core.param_groups import ROLE
from wrs_mm.testing import groups_by_name
import toy
from conftest import CPU_GRAD_SCALER, NEEDS_MMCV, BNNet

CONVS = ('conv1.weight', 'conv2.weight')


def _build(model, shifted, optimizer=None, **wrapper):
    cfg = dict(
        optimizer=optimizer or dict(type='SGD', lr=0.1, weight_decay=0.1),
        constructor='WRSOptimWrapperConstructor',
        paramwise_cfg=dict(shifted_reg=shifted),
        **wrapper)
    return build_optim_wrapper(model, cfg)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(
        8, 3, 8, 8, generator=g), torch.randint(
            0, 5, (8, ), generator=g)


@pytest.mark.parametrize('mode', ['coupled', 'decoupled'])
def test_update_equals_formula(mode):
    torch.manual_seed(0)
    model = BNNet().train()
    ow = _build(model, dict(eps=0.5, mode=mode))
    x, t = _batch()
    loss = F.cross_entropy(model(x), t)  # first forward: the analysis
    groups = groups_by_name(ow, model)
    assert {n for n, g in groups.items() if g.get(ROLE)} == set(CONVS)
    assert all(groups[n]['weight_decay'] == 0 for n in CONVS)
    assert groups['bn1.weight']['weight_decay'] == 0.1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    ow.step()
    params = dict(model.named_parameters())
    for n in CONVS:
        w, g = before[n], grads[n]
        reg = 0.1 * shifted_lp_grad(w.flatten(1), 0.5).view_as(w)
        assert torch.allclose(params[n], w - 0.1 * (g + reg), atol=1e-6), n
    for n in ('bn1.weight', 'fc.weight'):  # plain (coupled) weight decay
        want = before[n] - 0.1 * (grads[n] + 0.1 * before[n])
        assert torch.allclose(params[n], want, atol=1e-6), n


def test_accumulation_applies_once_per_update():
    torch.manual_seed(0)
    ref = BNNet().train()
    torch.manual_seed(0)
    model = BNNet().train()
    ow = _build(model, dict(eps=0.5, weight_decay=0.2), accumulative_counts=2)
    before = model.conv2.weight.detach().clone()
    for i in range(2):
        x, t = _batch(i)
        with ow.optim_context(model):
            loss = F.cross_entropy(model(x), t)
        ow.update_params(loss)
        if i == 0:  # micro-step: nothing applied yet
            assert torch.equal(model.conv2.weight, before)
    g = torch.zeros_like(before)  # the accumulated gradient, recomputed
    for i in range(2):
        ref.zero_grad()
        x, t = _batch(i)
        (F.cross_entropy(ref(x), t) / 2).backward()
        g += ref.conv2.weight.grad
    reg = 0.2 * shifted_lp_grad(before.flatten(1), 0.5).view_as(before)
    assert torch.allclose(
        model.conv2.weight, before - 0.1 * (g + reg), atol=1e-6)


@NEEDS_MMCV
def test_weight_standardised_convs_use_std_shift():
    from mmcv.cnn import ConvWS2d
    torch.manual_seed(0)
    model = nn.Sequential(
        ConvWS2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    model(torch.randn(1, 3, 6, 6))
    ow = _build(model, dict(eps=1e-3))
    x, t = torch.randn(4, 3, 6, 6), torch.randint(0, 5, (4, ))
    loss = F.cross_entropy(model(x), t)
    w = model[0].weight.detach().clone()
    loss.backward()
    g = model[0].weight.grad.clone()
    ow.step()
    reg = 0.1 * shifted_lp_grad(
        w.flatten(1), 1e-3, standardized=True).view_as(w)
    assert torch.allclose(model[0].weight, w - 0.1 * (g + reg), atol=1e-6)


@pytest.mark.parametrize('shifted, match', [
    (dict(eps=-1.), 'eps must be >= 0'),
    (dict(p=0.5), 'p must be >= 1'),
    (dict(mode='both'), 'mode must be one of'),
    (dict(backend='cuda'), 'shifted_reg.backend must be one of'),
    (dict(epsilon=1.), 'unknown keys'),
    (dict(include='backbone'), "include: pattern 'backbone'"),
    (dict(self_check='yes'), 'shifted_reg.self_check must be True or False'),
])
def test_bad_config(shifted, match):
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        _build(BNNet(), shifted)


def test_eps_keeps_norms_away_from_zero_in_training(tmp_path):
    """Same run with plain L2 on the convs (eps=0, equal to weight decay) and
    with eps=0.5: plain decay drives the conv norms toward 0."""
    norms = {}
    for eps in (0., 0.5):
        optim = dict(
            optimizer=dict(type='SGD', lr=0.5, weight_decay=0.5),
            constructor='WRSOptimWrapperConstructor',
            paramwise_cfg=dict(shifted_reg=dict(eps=eps)))
        runner = Runner.from_cfg(
            toy.runner_cfg(
                tmp_path / str(eps),
                20,
                optim_wrapper=optim,
                experiment_name=f'eps{eps}'))
        runner.train()
        net = runner.model.net
        norms[eps] = torch.cat([
            net.conv1.weight.detach().flatten(1).norm(dim=1),
            net.conv2.weight.detach().flatten(1).norm(dim=1)
        ])
    assert norms[0.].max() < 0.25
    assert norms[0.5].min() > 0.45


def test_wrs_and_shifted_on_same_weights_conflict(tmp_path):
    optim = dict(
        optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
        constructor='WRSOptimWrapperConstructor',
        paramwise_cfg=dict(shifted_reg=dict(eps=1e-3)))
    runner = Runner.from_cfg(
        toy.runner_cfg(
            tmp_path,
            2,
            optim_wrapper=optim,
            hook=dict(type='WeightRescaleHook')))
    with pytest.raises(ValueError, match='already handled by'):
        runner.train()


@CPU_GRAD_SCALER
def test_amp_regularizer_sees_unscaled_grads_and_skips_with_the_step():
    """AmpOptimWrapper with torch's GradScaler on CPU (scale 1024): the
    regularizer adds to the *unscaled* gradient, and a step skipped for an
    inf gradient applies nothing."""
    from unittest import mock
    torch.manual_seed(0)
    model = BNNet().train()
    with mock.patch(
            'mmengine.optim.optimizer.amp_optimizer_wrapper.'
            'is_cuda_available',
            return_value=True):
        ow = _build(model, dict(eps=0.5), type='AmpOptimWrapper')
    ow.loss_scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    x, t = _batch()
    loss = F.cross_entropy(model(x), t)
    w = model.conv2.weight.detach().clone()
    ow.backward(loss)
    g_scaled = model.conv2.weight.grad.clone()
    ow.step()
    reg = 0.1 * shifted_lp_grad(w.flatten(1), 0.5).view_as(w)
    assert torch.allclose(
        model.conv2.weight, w - 0.1 * (g_scaled / 1024 + reg), atol=1e-6)
    ow.zero_grad()
    w = model.conv2.weight.detach().clone()
    ow.backward(F.cross_entropy(model(x), t))
    model.conv2.weight.grad[0, 0, 0, 0] = float('inf')
    ow.step()
    assert torch.equal(model.conv2.weight, w)
