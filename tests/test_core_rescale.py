import pytest
import torch

from wrs_mm.core import RowEntry, WeightRescaler


def _params(dtype=torch.float32):
    torch.manual_seed(0)
    shapes = [(8, 3, 3, 3), (16, 8, 3, 3), (16, 8, 3, 3), (32, 16), (4, 6)]
    return [torch.randn(s, dtype=dtype) * 3 for s in shapes]


BACKENDS = ['loop', 'torch']


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.bfloat16])
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
        assert torch.allclose(p.float().reshape(r, -1),
                              q.reshape(r, -1) / qn[:, None], atol=tol * 4)
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
        WeightRescaler([RowEntry('layer.a', a, 4), RowEntry('layer.b', b, 3)],
                       backend=backend, check_finite='eager')()
    assert torch.equal(a, before_a)
    assert torch.equal(b.nan_to_num(7.), before_b.nan_to_num(7.))


@pytest.mark.parametrize('backend', BACKENDS)
def test_non_finite_deferred_raises_when_stats_are_read(backend):
    a, b = torch.randn(4, 5), torch.randn(3, 5)
    b[1, 2] = float('inf')
    row = b[1].clone()
    stats = WeightRescaler([RowEntry('layer.a', a, 4),
                            RowEntry('layer.b', b, 3)], backend=backend)()
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
