"""Invariance analysis on small hand-made models, and the theory of 000 Sec. 3."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from wrs_mm.core import analyze_invariance, verify_invariance


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_bn = nn.Conv2d(3, 8, 3, padding=1)            # BN: channel
        self.bn = nn.BatchNorm2d(8)
        self.c_gn = nn.Conv2d(8, 8, 3, padding=1, bias=False)  # GN: group
        self.gn = nn.GroupNorm(4, 8)
        self.c_gnb = nn.Conv2d(8, 8, 1)                      # GN + bias: none
        self.gn2 = nn.GroupNorm(2, 8)
        self.c_shared = nn.Conv2d(8, 8, 3, padding=1)        # BN + skip: none
        self.bn_s = nn.BatchNorm2d(8)
        self.c_frozen = nn.Conv2d(8, 8, 1)                   # eval BN: none
        self.bn_f = nn.BatchNorm2d(8)
        self.lin_ln = nn.Linear(8, 16, bias=False)           # LN: tensor
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 5)                         # no norm: none

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
            return self.out(F.relu(self.bn_a(self.conv(x))) +
                            F.relu(self.bn_b(self.conv(x * 2))))

    torch.manual_seed(0)
    m = Shared().train()
    x = torch.randn(2, 3, 6, 6)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['conv.weight'].kind == 'channel'
    assert 'bn_a' in r['conv.weight'].reason and 'bn_b' in r['conv.weight'].reason
    assert r['unused.weight'].kind == 'none'
    assert verify_invariance(m, lambda: m(x).square().mean(), r).ok


def test_weight_standardised_conv():
    class WSConv(nn.Conv2d):
        def forward(self, x):
            w = self.weight
            flat = w.view(w.size(0), -1)
            w = (w - flat.mean(1).view(-1, 1, 1, 1)) / (
                flat.std(1).view(-1, 1, 1, 1) + 1e-5)
            return F.conv2d(x, w, self.bias, self.stride, self.padding)

    torch.manual_seed(0)
    m = nn.Sequential(WSConv(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).train()
    x = torch.randn(2, 3, 8, 8)
    r = analyze_invariance(m, lambda: m(x).square().mean())
    assert r['0.weight'].kind == 'ws' and r['0.weight'].rows == 8
    assert r['2.weight'].kind == 'none'
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
    assert F.cosine_similarity(fc.detach().flatten(), fc.grad.flatten(),
                               dim=0).abs() > 1e-3
    eta = 0.5
    before = {n: params[n].detach().flatten(1).norm(dim=1)**2 for n in inv}
    grads = {n: params[n].grad.flatten(1).norm(dim=1)**2 for n in inv}
    torch.optim.SGD(bnnet.parameters(), lr=eta).step()
    for n in inv:
        after = params[n].detach().flatten(1).norm(dim=1)**2
        assert torch.allclose(after - before[n], eta**2 * grads[n],
                              rtol=1e-6, atol=0)
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


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='cuda-only: needs a CUDA device')
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
