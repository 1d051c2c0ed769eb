"""Invariance analysis on small hand-made models, and the theory of Liu et al.
2021 Sec. 3."""
import dataclasses
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from wrs_mm.core import (InvarianceReport, Reason, analyze_invariance,
                         invariance, verify_invariance)
from wrs_mm.core.rng import get_rng_states, set_rng_states
from conftest import NEEDS_MMCV


class Mixed(nn.Module):

    def __init__(self):
        super().__init__()
        self.c_bn = nn.Conv2d(3, 8, 3, padding=1)  # BN: channel
        self.bn = nn.BatchNorm2d(8)
        self.c_gn = nn.Conv2d(8, 8, 3, padding=1, bias=False)  # GN: group
        self.gn = nn.GroupNorm(4, 8)
        self.c_gnb = nn.Conv2d(8, 8, 1)  # GN + bias: none
        self.gn2 = nn.GroupNorm(2, 8)
        self.c_shared = nn.Conv2d(8, 8, 3, padding=1)  # BN + skip: none
        self.bn_s = nn.BatchNorm2d(8)
        self.c_frozen = nn.Conv2d(8, 8, 1)  # eval BN: none
        self.bn_f = nn.BatchNorm2d(8)
        self.lin_ln = nn.Linear(8, 16, bias=False)  # LN: tensor
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 5)  # no norm: none

    def train(self, mode=True):
        super().train(mode)
        self.bn_f.eval()  # like mmdet norm_eval=True
        return self

    def forward(self, x):
        x = F.relu(self.bn(self.c_bn(x)))
        x = F.relu(self.gn(self.c_gn(x)))
        x = F.relu(self.gn2(self.c_gnb(x)))
        y = self.c_shared(x)
        x = F.relu(self.bn_s(y)) + y
        x = F.relu(self.bn_f(self.c_frozen(x)))
        return self.head(F.relu(self.ln(self.lin_ln(x.mean((2, 3))))))


def _loss(model, x, t):
    return lambda: F.cross_entropy(model(x), t)


def test_mixed_model_classes_and_verification():
    torch.manual_seed(0)
    m = Mixed().train()
    x, t = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    bn_stats = m.bn.running_mean.clone()
    report = analyze_invariance(m, _loss(m, x, t))
    assert torch.equal(m.bn.running_mean, bn_stats), 'running stats restored'
    kinds = {n: (v.kind, v.rows) for n, v in report.items()}
    assert kinds['c_bn.weight'] == ('channel', 8)
    assert kinds['c_gn.weight'] == ('group', 4)
    assert kinds['c_gnb.weight'][0] == 'none'
    assert 'bias' in report['c_gnb.weight'].reason
    assert kinds['c_shared.weight'][0] == 'none'
    assert 'AddBackward0' in report['c_shared.weight'].reason
    assert kinds['c_frozen.weight'][0] == 'none'
    assert 'eval mode' in report['c_frozen.weight'].reason
    assert kinds['lin_ln.weight'] == ('tensor', 1)
    assert kinds['head.weight'][0] == 'none'
    assert all(v.kind == 'none' for n, v in report.items() if len(v.shape) < 2)
    result = verify_invariance(m, _loss(m, x, t), report)
    assert result.ok, result.failures
    assert result.invariant_count == 3
    assert min(result.refused_rel_change.values()) > 1e-4
    # per-channel rescaling of the group-invariant weight is NOT invariant
    with torch.no_grad():
        base = _loss(m, x, t)().item()
        m.c_gn.weight[0].mul_(3)
        assert abs(_loss(m, x, t)().item() - base) > 1e-4 * abs(base)


def test_verify_detects_a_wrong_report():
    torch.manual_seed(0)
    m = Mixed().train()
    x, t = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    report = analyze_invariance(m, _loss(m, x, t))
    report['head.weight'].kind, report['head.weight'].rows = 'channel', 5
    result = verify_invariance(m, _loss(m, x, t), report)
    assert not result.ok


def test_shared_module_and_unused():

    class Shared(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn_a, self.bn_b = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
            self.unused = nn.Conv2d(4, 4, 1)
            self.out = nn.Conv2d(4, 2, 1)

        def forward(self, x):  # the conv is applied twice, each time to a BN
            return self.out(
                F.relu(self.bn_a(self.conv(x))) +
                F.relu(self.bn_b(self.conv(x * 2))))

    torch.manual_seed(0)
    m = Shared().train()
    x = torch.randn(2, 3, 6, 6)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['conv.weight'].kind == 'channel'
    assert 'bn_a' in r['conv.weight'].reason and 'bn_b' in r[
        'conv.weight'].reason
    assert r['unused.weight'].kind == 'none'
    assert verify_invariance(m, lambda: m(x).square().mean(), r).ok


def test_weight_standardised_conv():
    torch.manual_seed(0)
    m = nn.Sequential(
        _StandardisingConv(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).train()
    x = torch.randn(2, 3, 8, 8)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['0.weight'].kind == 'ws' and r['0.weight'].rows == 8
    assert r['2.weight'].kind == 'none'
    assert verify_invariance(m, lambda: m(x).square().mean(), r).ok


class _BiasDominatedConv(nn.Conv2d):
    """A plain conv with a forward of its own (so the numerical probe runs)
    whose output is dominated by a large bias, on a tiny input: the case
    that fooled a probe measuring the whole output."""

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


def test_bias_dominated_plain_conv_is_not_weight_standardised():
    torch.manual_seed(0)
    conv = _BiasDominatedConv(3, 8, 3)
    nn.init.constant_(conv.bias, -4.595)  # RetinaNet's prior bias
    m = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(8, 4, 3)).train()
    x = 1e-3 * torch.randn(2, 3, 8, 8) * (torch.rand(2, 3, 8, 8) > 0.5)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['0.weight'].kind == 'none', r['0.weight'].reason
    # the same layer class standardising its weight is found by the probe
    # at the same tiny input and large bias
    ws = _StandardisingConv(3, 8, 3)
    nn.init.constant_(ws.bias, -4.595)
    m = nn.Sequential(ws, nn.ReLU(), nn.Conv2d(8, 4, 3)).train()
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['0.weight'].kind == 'ws' and 'probe' in r['0.weight'].reason


class _StandardisingConv(nn.Conv2d):

    def forward(self, x):
        w = self.weight
        flat = w.view(w.size(0), -1)
        w = (w - flat.mean(1).view(-1, 1, 1, 1)) / (
            flat.std(1).view(-1, 1, 1, 1) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_plain_torch_conv_is_never_weight_standardised():
    """Structural: a layer running torch's own forward uses its weight as it
    is, whatever its input (here all zeros: nothing to probe)."""
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)).train()
    x = torch.zeros(2, 3, 8, 8)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['0.weight'].kind == 'none'


@NEEDS_MMCV
def test_mmcv_conv_ws_is_recognised_by_its_class():
    from mmcv.cnn import ConvAWS2d, ConvWS2d
    torch.manual_seed(0)
    m = nn.Sequential(
        ConvWS2d(3, 8, 3), nn.ReLU(), ConvAWS2d(8, 8, 3), nn.ReLU(),
        nn.Conv2d(8, 4, 3)).train()
    x = torch.randn(2, 3, 12, 12)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['0.weight'].kind == 'ws' and '(ConvWS2d)' in r['0.weight'].reason
    assert r['2.weight'].kind == 'ws' and 'ConvAWS2d' in r['2.weight'].reason
    assert r['4.weight'].kind == 'none'
    # ConvAWS2d's eps (1e-5 inside the sqrt) is not an attribute the check
    # can shrink: verify the exactly checkable part
    m = nn.Sequential(m[0], nn.ReLU(), nn.Conv2d(8, 4, 3)).train()
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert verify_invariance(m, lambda: m(x).square().mean(), r).ok


def test_theorem_3_1_and_corollary_3_3(bnnet):
    """<w_j, dL/dw_j> = 0 for invariant weights, and with plain SGD
    ||w_j(t+1)||^2 - ||w_j(t)||^2 = eta^2 ||dL/dw_j||^2."""
    torch.manual_seed(1)
    bnnet.double()  # so that rounding and BN's eps do not blur the identities
    bnnet.bn1.eps = bnnet.bn2.eps = 1e-14
    x, t = torch.randn(16, 3, 8, 8).double(), torch.randint(0, 5, (16, ))
    report = analyze_invariance(bnnet, lambda: F.cross_entropy(bnnet(x), t))
    loss = F.cross_entropy(bnnet(x), t)
    inv = {v.name for v in report.invariant()}
    assert inv == {'conv1.weight', 'conv2.weight'}
    loss.backward()
    params = dict(bnnet.named_parameters())
    for name in inv:
        w, g = params[name].detach(), params[name].grad
        cos = F.cosine_similarity(w.flatten(1), g.flatten(1), dim=1)
        assert cos.abs().max() < 1e-8, (name, cos)
    fc = params['fc.weight']
    assert F.cosine_similarity(
        fc.detach().flatten(), fc.grad.flatten(), dim=0).abs() > 1e-3
    eta = 0.5
    before = {n: params[n].detach().flatten(1).norm(dim=1)**2 for n in inv}
    grads = {n: params[n].grad.flatten(1).norm(dim=1)**2 for n in inv}
    torch.optim.SGD(bnnet.parameters(), lr=eta).step()
    for n in inv:
        after = params[n].detach().flatten(1).norm(dim=1)**2
        assert torch.allclose(
            after - before[n], eta**2 * grads[n], rtol=1e-6, atol=0)
        assert torch.all(after > before[n])


class DropoutNet(nn.Module):
    """BN convs, then dropout before the head: every forward draws a mask."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def _verify_dropout(device):
    torch.manual_seed(0)
    m = DropoutNet().to(device).train()
    x = torch.randn(4, 3, 8, 8, device=device)
    t = torch.randint(0, 4, (4, ), device=device)
    report = analyze_invariance(m, _loss(m, x, t))
    assert [v.name for v in report.invariant()] == ['conv.weight']
    before = torch.random.get_rng_state()
    result = verify_invariance(m, _loss(m, x, t), report)
    assert result.ok, result.failures
    assert result.noise_rel == 0  # the same dropout mask in every forward
    assert result.refused_rel_change['fc.weight'] > 1e-4
    assert any('random state' in p for p in result.precautions)
    assert any('tf32 off' in p for p in result.precautions)
    assert torch.equal(torch.random.get_rng_state(), before)  # restored


def test_verify_with_dropout_resets_every_random_state():
    _verify_dropout('cpu')


def test_rng_states_restore_every_generator():
    states = get_rng_states()

    def draw():
        cuda = [
            torch.rand(2, device=f'cuda:{d}').cpu()
            for d in range(torch.cuda.device_count())
        ]
        return torch.rand(3), cuda, np.random.rand(3), random.random()

    first = draw()
    set_rng_states(states)
    again = draw()
    assert torch.equal(first[0], again[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], again[1]))
    assert (first[2] == again[2]).all() and first[3] == again[3]
    assert not torch.equal(draw()[0], first[0])


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='cuda-only: needs a CUDA device')
def test_cuda_verify_with_dropout_and_tf32_switched_off():
    torch.backends.cudnn.allow_tf32 = True
    try:
        _verify_dropout('cuda')
        assert torch.backends.cudnn.allow_tf32  # restored afterwards
    finally:
        torch.backends.cudnn.allow_tf32 = False


def test_verify_names_the_likely_cause_of_a_failure():
    torch.manual_seed(0)
    m = DropoutNet().train()
    x = torch.randn(4, 3, 8, 8)
    t = torch.randint(0, 4, (4, ))
    report = analyze_invariance(m, _loss(m, x, t))
    draws = iter(range(1000))

    def noisy():  # a nondeterministic forward: different dropout each call
        torch.manual_seed(next(draws))
        return _loss(m, x, t)()

    result = verify_invariance(m, noisy, report)
    assert not result.ok and result.noise_rel > 1e-5
    assert 'not deterministic' in result.failures[-1]


def test_rescale_change_is_the_measured_output_change():
    """``rescale_change`` predicts exactly how much a rescale to unit norm
    moves the BatchNorm output at the analysed batch (eps = 0.1, large on
    purpose); ``eps_error`` is eps / (var + eps)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, bias=False)
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.2, 3, 6).view(-1, 1, 1, 1))
    bn = nn.BatchNorm2d(6, eps=0.1, affine=False)
    m = nn.Sequential(conv, bn).train()
    x = torch.randn(4, 3, 10, 10)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    v = r['0.weight']
    with torch.no_grad():
        z = conv(x)
        var = z.transpose(0, 1).flatten(1).var(1, unbiased=False)
        y0 = bn(z)
        conv.weight.div_(conv.weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        y1 = bn(conv(x))
    measured = ((y1 - y0).flatten(2).norm(dim=(0, 2)) /
                y0.transpose(0, 1).flatten(1).norm(dim=1)).max()
    assert v.rescale_change == pytest.approx(measured.item(), rel=1e-4)
    assert v.eps_error == pytest.approx(
        (0.1 / (var + 0.1)).max().item(), rel=1e-5)
    assert v.norms == ('1', )


class _Gated(nn.Module):
    """BN convs and a head whose output is multiplied by a zero gate (as a
    zero-initialised residual gamma or layer scale): the loss does not see
    the head at this point."""

    def __init__(self, scale=1.):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 8, 1)
        self.gate = nn.Parameter(torch.zeros(1))
        self.out = nn.Linear(8, 5)
        self.scale = scale

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = y + self.gate * self.head(y)
        return self.out(y.mean((2, 3))) * self.scale


def _xt():
    torch.manual_seed(0)
    return torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))


def test_verify_three_outcomes():
    """invariant (conv), not invariant (out), cannot tell (the gated head):
    no failure, one warning naming the head."""
    x, t = _xt()
    m = _Gated().train()
    report = analyze_invariance(m, _loss(m, x, t))
    result = verify_invariance(m, _loss(m, x, t), report)
    assert result.ok, result.failures
    assert result.outcomes == {
        'conv.weight': 'invariant',
        'head.weight': 'cannot tell',
        'out.weight': 'not invariant'
    }
    assert result.sensitivity['conv.weight'] > 1e-3
    assert result.sensitivity['head.weight'] == 0
    assert len(result.warnings) == 1 and 'head.weight' in result.warnings[0]
    assert result.counts() == {
        'invariant': 1,
        'not invariant': 1,
        'cannot tell': 1,
        'contradiction': 0
    }


def test_verify_refuted_refusal_is_a_failure():
    """A report that calls the BN conv not invariant is refuted: rescaling
    it leaves the loss as it is, noise on it does not."""
    x, t = _xt()
    m = _Gated().train()
    report = analyze_invariance(m, _loss(m, x, t))
    report['conv.weight'].kind, report['conv.weight'].rows = 'none', 0
    result = verify_invariance(m, _loss(m, x, t), report)
    assert not result.ok
    assert result.outcomes['conv.weight'] == 'contradiction'
    assert 'conv.weight: called not invariant' in result.failures[0]


def test_verify_cannot_tell_when_the_loss_ignores_the_invariant_set():
    """The logits are scaled by 1e-9: the loss stays near log(5), nothing
    moves it beyond rtol, so the invariant set is 'cannot tell', not
    'invariant'."""
    x, t = _xt()
    m = _Gated(scale=1e-9).train()
    report = analyze_invariance(m, _loss(m, x, t))
    result = verify_invariance(m, _loss(m, x, t), report)
    assert result.ok
    assert result.outcomes['conv.weight'] == 'cannot tell'
    assert any('invariant weights' in w for w in result.warnings)


class NormInsideConv(nn.Conv2d):
    """Like Detectron2's ``layers.Conv2d``: the norm and the activation run
    inside the conv's own forward."""

    def __init__(self, *args, norm=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x):
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return F.relu(self.norm(x)) if self.norm is not None else x


class DecomposedBatchNorm2d(nn.BatchNorm2d):
    """Like Detectron2's ``NaiveSyncBatchNorm`` on several ranks: batch
    statistics computed op by op."""

    def forward(self, x):
        mean = x.mean(dim=(0, 2, 3))
        var = (x * x).mean(dim=(0, 2, 3)) - mean * mean
        scale = self.weight * torch.rsqrt(var + self.eps)
        bias = self.bias - mean * scale
        return x * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


class FrozenBatchNorm2d(nn.Module):
    """Like Detectron2's / torchvision's ``FrozenBatchNorm2d``: fixed
    statistics, no torch norm subclass."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer('scale', torch.rand(c) + 0.5)
        self.register_buffer('shift', torch.randn(c))

    def forward(self, x):
        return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


class NormInside(nn.Module):

    def __init__(self):
        super().__init__()
        self.c_bn = NormInsideConv(3, 8, 3, padding=1, norm=nn.BatchNorm2d(8))
        self.c_gn = NormInsideConv(
            8, 8, 3, padding=1, bias=False, norm=nn.GroupNorm(4, 8))
        self.c_sync = NormInsideConv(
            8, 8, 1, bias=False, norm=DecomposedBatchNorm2d(8))
        self.c_frozen = NormInsideConv(8, 8, 1, norm=FrozenBatchNorm2d(8))
        self.c_plain = NormInsideConv(8, 8, 1)  # FPN lateral without norm
        self.c_mixed = NormInsideConv(8, 8, 1, bias=False)
        self.bn_mixed = DecomposedBatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.c_sync(self.c_gn(self.c_bn(x)))
        x = self.c_frozen(x) + self.c_plain(x)
        y = self.c_mixed(x)
        x = self.bn_mixed(y + x)  # normalises more than c_mixed's output
        return self.head(x.mean((2, 3)))


def test_weight_op_inside_a_module_that_normalises():
    torch.manual_seed(0)
    m = NormInside().train()
    x, t = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    report = analyze_invariance(m, _loss(m, x, t))
    kinds = {n: (v.kind, v.rows) for n, v in report.items()}
    assert kinds['c_bn.weight'] == ('channel', 8), report['c_bn.weight'].reason
    assert kinds['c_gn.weight'] == ('group', 4)
    assert kinds['c_sync.weight'] == ('channel',
                                      8), report['c_sync.weight'].reason
    assert report['c_sync.weight'].norms == ('c_sync.norm', )
    assert kinds['c_frozen.weight'][0] == 'none'
    assert "FrozenBatchNorm2d 'c_frozen.norm'" in report[
        'c_frozen.weight'].reason
    assert 'frozen' in report['c_frozen.weight'].reason
    assert 'AddBackward0' in report['c_plain.weight'].reason
    assert report['c_mixed.weight'].kind == 'none'
    assert 'AddBackward0' in report['c_mixed.weight'].reason
    result = verify_invariance(m, _loss(m, x, t), report)
    assert result.ok, result.failures
    assert result.outcomes['c_sync.weight'] == 'invariant'
    assert result.outcomes['c_plain.weight'] == 'not invariant'


class StdConv2d(_StandardisingConv):
    """Named like timm's: recognised by its class, not by the probe."""


class EveryCause(nn.Module):
    """One weight per :class:`Reason` code: each attribute is named after
    the cause of its verdict."""

    def __init__(self):
        super().__init__()
        self.normalised = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.ws_class = StdConv2d(8, 8, 3, padding=1)
        self.ws_probe = _StandardisingConv(8, 8, 3, padding=1)
        self.frozen = nn.Conv2d(8, 8, 1, bias=False).requires_grad_(False)
        self.unused = nn.Conv2d(8, 8, 1)
        self.transposed = nn.ConvTranspose2d(8, 8, 1)
        self.eval_norm = nn.Conv2d(8, 8, 1)
        self.bn_eval = nn.BatchNorm2d(8)
        self.frozen_norm = nn.Conv2d(8, 8, 1)
        self.frozen_bn = FrozenBatchNorm2d(8)
        self.bias_norm = nn.Conv2d(8, 8, 1)
        self.gn = nn.GroupNorm(2, 8)
        self.gate = nn.Parameter(torch.ones(1, 8))  # no layer's weight
        self.head = nn.Linear(8, 5)

    def train(self, mode=True):
        super().train(mode)
        self.bn_eval.eval()
        return self

    def forward(self, x):
        x = F.relu(self.bn(self.normalised(x)))
        x = self.frozen(self.ws_probe(self.ws_class(x)))
        self.unused(x)
        x = self.transposed(x)
        x = (
            self.bn_eval(self.eval_norm(x)) +
            self.frozen_bn(self.frozen_norm(x)) + self.gn(self.bias_norm(x)))
        return self.head(x.mean((2, 3)) * self.gate)


#: the verdict on each weight of :class:`EveryCause`
EVERY_CAUSE = {
    'normalised.weight': (Reason.NORMALISED, 'channel'),
    'ws_class.weight': (Reason.STANDARDISED_CLASS, 'ws'),
    'ws_probe.weight': (Reason.STANDARDISED_PROBE, 'ws'),
    'frozen.weight': (Reason.FROZEN, 'none'),
    'unused.weight': (Reason.UNUSED, 'none'),
    'transposed.weight': (Reason.TRANSPOSED, 'none'),
    'eval_norm.weight': (Reason.EVAL_NORM, 'none'),
    'frozen_norm.weight': (Reason.FROZEN_NORM, 'none'),
    'bias_norm.weight': (Reason.BIAS_BEFORE_NORM, 'none'),
    'gate': (Reason.NOT_A_LAYER, 'none'),
    'head.weight': (Reason.NOT_ONLY_NORMALISED, 'none'),
}


def _every_cause_report() -> InvarianceReport:
    torch.manual_seed(0)
    m = EveryCause().train()
    x, t = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    return analyze_invariance(m, _loss(m, x, t))


def test_each_reason_code_and_its_class():
    report = _every_cause_report()
    got = {n: (v.code, v.kind) for n, v in report.items() if len(v.shape) >= 2}
    assert got == EVERY_CAUSE, report.table()
    assert all(v.code is Reason.ONE_DIM for v in report.values()
               if len(v.shape) < 2)
    assert {v.code for v in report.values()} == set(Reason)
    assert report['gate'].to_json()['code'] == 'not_a_layer'


def test_decisions_read_codes_not_messages(monkeypatch):
    """Rewording a message changes neither the candidates nor which weights
    influence the loss."""
    monkeypatch.setattr(invariance, '_UNUSED', 'reworded: output unused')
    monkeypatch.setattr(invariance, '_NOT_A_LAYER', 'reworded: no layer')
    report = _every_cause_report()
    assert report['unused.weight'].reason == 'reworded: output unused'
    assert {n
            for n, v in report.items()
            if not v.in_graph} == {'unused.weight', 'gate'}
    candidates = [v.name for v in report.candidates()]
    assert set(candidates) == set(EVERY_CAUSE) - {'frozen.weight'}
    # messages that read as the other verdicts do not move them either
    reworded = InvarianceReport({
        n:
        dataclasses.replace(
            v,
            reason='trainable' if v.code is Reason.FROZEN else 'frozen: ' +
            v.reason)
        for n, v in report.items()
    })
    assert [v.name for v in reworded.candidates()] == candidates
    assert [n for n, v in reworded.items() if not v.in_graph
            ] == [n for n, v in report.items() if not v.in_graph]
