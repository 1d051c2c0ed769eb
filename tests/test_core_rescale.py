import pytest
import torch

from wrs_mm.core import RowEntry, WeightRescaler


def _params(dtype=torch.float32):
    torch.manual_seed(0)
    shapes = [(8, 3, 3, 3), (16, 8, 3, 3), (16, 8, 3, 3), (32, 16), (4, 6)]
    return [torch.randn(s, dtype=dtype) * 3 for s in shapes]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.bfloat16])
def test_unit_norm_per_row(dtype):
    ps = _params(dtype)
    rows = [8, 4, 16, 1, 2]  # channel, group, channel, tensor, group
    ref = [p.float().clone() for p in ps]
    stats = WeightRescaler(
        [RowEntry(f'p{i}', p, r) for i, (p, r) in enumerate(zip(ps, rows))])()
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


def test_zero_row_left_and_counted():
    p = torch.randn(4, 5)
    p[2] = 0
    stats = WeightRescaler([RowEntry('w', p, 4)])()
    assert stats.zero_rows == 1
    assert torch.all(p[2] == 0)
    assert torch.allclose(p[[0, 1, 3]].norm(dim=1), torch.ones(3))


def test_non_finite_raises_and_changes_nothing():
    a, b = torch.randn(4, 5), torch.randn(3, 5)
    b[1, 2] = float('nan')
    before = a.clone()
    with pytest.raises(FloatingPointError, match="'layer.b'"):
        WeightRescaler([RowEntry('layer.a', a, 4), RowEntry('layer.b', b, 3)])()
    assert torch.equal(a, before)


def test_bad_rows():
    with pytest.raises(ValueError, match="'w'"):
        RowEntry('w', torch.randn(6, 4), 5)


def test_channels_last_weight():
    p = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    ref = p.clone().contiguous()
    WeightRescaler([RowEntry('w', p, 8)])()
    want = ref.reshape(8, -1) / ref.reshape(8, -1).norm(dim=1, keepdim=True)
    assert torch.allclose(p.reshape(8, -1), want, atol=1e-6)
