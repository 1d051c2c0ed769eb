import pytest
import torch

from wrs_mm.core import RowEntry, WeightRescaler


def _params(dtype=torch.float32):
    torch.manual_seed(0)
    shapes = [(8, 3, 3, 3), (16, 8, 3, 3), (16, 8, 3, 3), (32, 16), (4, 6)]
    return [torch.randn(s, dtype=dtype) * 3 for s in shapes]


BACKENDS = ['loop', 'torch']


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype',
                         [torch.float32, torch.float16, torch.bfloat16])
def test_unit_norm_per_row(dtype, backend):
    ps = _params(dtype)
    rows = [8, 4, 16, 1, 2]  # channel, group, channel, tensor, group
    ref = [p.float().clone() for p in ps]
    stats = WeightRescaler(
        [RowEntry(f'p{i}', p, r) for i, (p, r) in enumerate(zip(ps, rows))],
        backend=backend)()
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    all_norms = []
    for p, r, q in zip(ps, rows, ref):
        norms = p.float().reshape(r, -1).norm(dim=1)
        assert torch.allclose(norms, torch.ones(r), atol=tol)
        qn = q.reshape(r, -1).norm(dim=1)
        all_norms.append(qn)
        # direction kept
        assert torch.allclose(
            p.float().reshape(r, -1),
            q.reshape(r, -1) / qn[:, None],
            atol=tol * 4)
    all_norms = torch.cat(all_norms)
    assert stats.rows == len(all_norms) and stats.zero_rows == 0
    assert stats.norm_max == pytest.approx(all_norms.max().item(), rel=1e-2)
    assert stats.norm_min == pytest.approx(all_norms.min().item(), rel=1e-2)


@pytest.mark.parametrize('backend', BACKENDS)
def test_zero_row_left_and_counted(backend):
    p = torch.randn(4, 5)
    p[2] = 0
    stats = WeightRescaler([RowEntry('w', p, 4)], backend=backend)()
    assert stats.zero_rows == 1
    assert torch.all(p[2] == 0)
    assert torch.allclose(p[[0, 1, 3]].norm(dim=1), torch.ones(3))


@pytest.mark.parametrize('backend', BACKENDS)
def test_non_finite_eager_raises_and_changes_nothing(backend):
    a, b = torch.randn(4, 5), torch.randn(3, 5)
    b[1, 2] = float('nan')
    before_a, before_b = a.clone(), b.clone()
    with pytest.raises(FloatingPointError, match="'layer.b'.*nothing was"):
        WeightRescaler([RowEntry('layer.a', a, 4),
                        RowEntry('layer.b', b, 3)],
                       backend=backend,
                       check_finite='eager')()
    assert torch.equal(a, before_a)
    assert torch.equal(b.nan_to_num(7.), before_b.nan_to_num(7.))


@pytest.mark.parametrize('backend', BACKENDS)
def test_non_finite_deferred_raises_when_stats_are_read(backend):
    a, b = torch.randn(4, 5), torch.randn(3, 5)
    b[1, 2] = float('inf')
    row = b[1].clone()
    stats = WeightRescaler(
        [RowEntry('layer.a', a, 4),
         RowEntry('layer.b', b, 3)],
        backend=backend)()
    # the finite rows are rescaled, the non-finite one is left as it was
    assert torch.allclose(a.norm(dim=1), torch.ones(4))
    assert torch.allclose(b[[0, 2]].norm(dim=1), torch.ones(2))
    assert torch.equal(b[1], row)
    with pytest.raises(FloatingPointError, match="'layer.b'.*left as they"):
        stats.norm_mean


def test_bad_backend_and_check_names_the_choices():
    p = torch.randn(4, 5)
    with pytest.raises(ValueError, match="backend must be one of"):
        WeightRescaler([RowEntry('w', p, 4)], backend='cuda')
    with pytest.raises(ValueError, match="check_finite must be one of"):
        WeightRescaler([RowEntry('w', p, 4)], check_finite='never')


def test_bad_rows():
    with pytest.raises(ValueError, match="'w'"):
        RowEntry('w', torch.randn(6, 4), 5)


@pytest.mark.parametrize('backend', BACKENDS)
def test_channels_last_weight(backend):
    p = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    ref = p.clone().contiguous()
    WeightRescaler([RowEntry('w', p, 8)], backend=backend)()
    want = ref.reshape(8, -1) / ref.reshape(8, -1).norm(dim=1, keepdim=True)
    assert torch.allclose(p.reshape(8, -1), want, atol=1e-6)


def _bn_pair(bnnet, optimizer_cls, **opt_kw):
    """Two copies of a BN net (BN eps tiny: exact invariance) with their own
    optimizer, stepped twice on the same batches so that the buffers hold
    history."""
    import copy
    for m in bnnet.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-12
    nets = [bnnet, copy.deepcopy(bnnet)]
    opts = [optimizer_cls(n.parameters(), **opt_kw) for n in nets]
    return nets, opts


def _step(net, opt, x, y):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()


@pytest.mark.parametrize('optimizer_cls, kw, keys', [
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9), {
        'momentum_buffer': 1
    }),
    (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.), {
        'exp_avg': 1,
        'exp_avg_sq': 2
    }),
    (torch.optim.Adam, dict(lr=1e-2, amsgrad=True), {
        'exp_avg': 1,
        'exp_avg_sq': 2,
        'max_exp_avg_sq': 2
    }),
])
def test_optimizer_state_follows_the_rescaled_gradients(
        bnnet, optimizer_cls, kw, keys):
    """Net A keeps its weights; net B rescales its convs and its optimizer
    state. On the next step B's conv gradients are s_j times A's (by
    invariance), and B's buffers must equal what A's buffers would be with
    gradients s_j times larger: s_j (first moments) / s_j^2 (second) times
    A's, row by row; both nets keep computing the same function."""
    from wrs_mm.core import rescale_optimizer_state
    (a, b), (opt_a, opt_b) = _bn_pair(bnnet, optimizer_cls, **kw)
    torch.manual_seed(1)
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8, )))
               for _ in range(3)]
    for x, y in batches[:2]:
        _step(a, opt_a, x, y)
        _step(b, opt_b, x, y)
    convs = ('conv1', 'conv2')
    s = {
        c: getattr(b, c).weight.detach().flatten(1).norm(dim=1)
        for c in convs
    }
    stats = WeightRescaler(
        [RowEntry(c,
                  getattr(b, c).weight, s[c].numel()) for c in convs])()
    rescale_optimizer_state(opt_b, stats)
    for c in convs:  # the state alone, before any new step
        shape = (-1, ) + (1, ) * 3
        for key, power in keys.items():
            got = opt_b.state[getattr(b, c).weight][key]
            want = opt_a.state[getattr(a, c).weight][key] * \
                s[c].view(shape)**power
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-12), (c, key)
    x, y = batches[2]
    assert torch.allclose(a(x), b(x), atol=1e-4)  # same function
    _step(a, opt_a, x, y)
    _step(b, opt_b, x, y)
    for c in convs:
        ga, gb = getattr(a, c).weight.grad, getattr(b, c).weight.grad
        shape = (-1, ) + (1, ) * 3
        assert torch.allclose(gb, ga * s[c].view(shape), rtol=1e-3, atol=1e-7)
        for key, power in keys.items():  # consistent after the step too
            got = opt_b.state[getattr(b, c).weight][key]
            want = opt_a.state[getattr(a, c).weight][key] * \
                s[c].view(shape)**power
            assert torch.allclose(
                got, want, rtol=1e-3, atol=1e-4 * want.abs().max()), (c, key)


def test_optimizer_state_unknown_buffer_is_an_error_and_changes_nothing():
    from wrs_mm.core import rescale_optimizer_state
    p = torch.nn.Parameter(torch.randn(4, 3) * 2)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.randn(4, 3)
    opt.step()
    buf = opt.state[p]['momentum_buffer'].clone()
    opt.state[p]['my_trace'] = torch.ones(4, 3)
    stats = WeightRescaler([RowEntry('p', p, 4)])()
    with pytest.raises(ValueError, match="'my_trace' for 'p'"):
        rescale_optimizer_state(opt, stats)
    assert torch.equal(opt.state[p]['momentum_buffer'], buf)


@pytest.mark.parametrize('backend', BACKENDS)
def test_target_norm_number_init_and_per_weight(backend):
    """A number sets every row to it; 'init' sets each weight's rows to the
    RMS of its row norms at construction; a dict sets them per weight. The
    direction of every row is kept, and a zero row stays zero."""
    for target in (0.577, 'init', {'p0': 0.5, 'p1': 2., 'p2': 1.}):
        ps = [torch.randn(8, 3, 3, 3), torch.randn(6, 4), torch.randn(4, 5)]
        ps[1][2] = 0
        before = [p.clone() for p in ps]
        rows = [8, 6, 2]  # channel, channel, group
        rms = [float(p.square().sum().div(r).sqrt()) for p, r in zip(ps, rows)]
        op = WeightRescaler([
            RowEntry(f'p{i}', p, r) for i, (p, r) in enumerate(zip(ps, rows))
        ],
                            backend=backend,
                            target_norm=target)
        if target == 'init':
            want = dict(p0=rms[0], p1=rms[1], p2=rms[2])
        elif isinstance(target, dict):
            want = target
        else:
            want = dict.fromkeys(('p0', 'p1', 'p2'), target)
        assert op.targets == pytest.approx(want)
        stats = op()
        assert stats.zero_rows == 1
        for i, (p, q, r) in enumerate(zip(ps, before, rows)):
            m, mq = p.reshape(r, -1), q.reshape(r, -1)
            live = mq.norm(dim=1) > 0
            assert torch.allclose(
                m[live].norm(dim=1),
                torch.full((int(live.sum()), ), want[f'p{i}']),
                rtol=1e-5)
            assert torch.allclose(
                m[live] / m[live].norm(dim=1, keepdim=True),
                mq[live] / mq[live].norm(dim=1, keepdim=True),
                atol=1e-6)
            assert torch.equal(m[~live], mq[~live])
        # row_scales: what each row was divided by, norm / target
        for entries, scales in stats.row_scales():
            for e, s in zip(entries, scales):
                q = before[int(e.name[1])].reshape(e.rows, -1).norm(dim=1)
                expect = torch.where(q > 0, q / want[e.name],
                                     torch.ones_like(q)).repeat_interleave(
                                         e.param.shape[0] // e.rows)
                assert torch.allclose(s.reshape(-1), expect, rtol=1e-5)


@pytest.mark.parametrize(
    'bad',
    [0, -1.,
     float('inf'),
     float('nan'), 'unit', True, None, {
         'w': 0.
     }, {}])
def test_bad_target_norm_names_the_key_and_changes_nothing(bad):
    p = torch.randn(4, 5)
    before = p.clone()
    with pytest.raises(ValueError, match='WeightRescaler.target_norm must be'):
        WeightRescaler([RowEntry('w', p, 4)], target_norm=bad)
    with pytest.raises(ValueError, match="no target norm for \\['w'\\]"):
        WeightRescaler([RowEntry('w', p, 4)], target_norm={'v': 1.})
    assert torch.equal(p, before)


def test_optimizer_state_follows_a_rescale_to_a_target(bnnet):
    """With a target r the row scale is s_j = ||w_j|| / r, and
    rescale_optimizer_state multiplies SGD's momentum by it."""
    from wrs_mm.core import rescale_optimizer_state
    opt = torch.optim.SGD(bnnet.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8, ))
    torch.nn.functional.cross_entropy(bnnet(x), y).backward()
    opt.step()
    w = bnnet.conv2.weight
    norms = w.detach().flatten(1).norm(dim=1)
    buf = opt.state[w]['momentum_buffer'].clone()
    stats = WeightRescaler([RowEntry('conv2', w, w.shape[0])],
                           target_norm=0.25)()
    rescale_optimizer_state(opt, stats)
    assert torch.allclose(
        w.detach().flatten(1).norm(dim=1),
        torch.full_like(norms, 0.25),
        rtol=1e-5)
    assert torch.allclose(
        opt.state[w]['momentum_buffer'],
        buf * (norms / 0.25).view(-1, 1, 1, 1),
        rtol=1e-5)
