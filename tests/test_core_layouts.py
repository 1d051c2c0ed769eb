"""Weights that are not contiguous: channels_last conv weights (each row a
permuted block) and weights that are views with gaps between their rows (a
slice, a transpose). Every backend writes the parameter in place, with the
values of the contiguous computation. The Triton kernels (channels_last
written in place, rows with gaps refused with a clear message) are tested
under Triton's interpreter in test_kernels.py."""
import pytest
import torch

from wrs_mm.core import (RowEntry, ShiftedLpEntry, ShiftedLpRegularizer,
                         WeightRescaler)


def _layouts():
    """(name, parameter, the storage it lives in) for each layout."""
    torch.manual_seed(0)
    cl = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    base = torch.randn(8, 6, 3, 3)
    sliced = base[:, ::2]  # rows with gaps: no reshape can view it
    t_base = torch.randn(5, 8)
    transposed = t_base.t()  # (8, 5), strides (1, 8)
    return [('channels_last', cl, cl), ('slice', sliced, base),
            ('transpose', transposed, t_base)]


def _rows(p):
    return p.reshape(p.shape[0], -1)


@pytest.mark.parametrize('backend', ['loop', 'torch'])
def test_rescale_writes_every_layout_in_place(backend):
    for name, p, storage in _layouts():
        want = _rows(p) / _rows(p).norm(dim=1, keepdim=True) * 0.5
        ptr = p.data_ptr()
        WeightRescaler([RowEntry(name, p, p.shape[0])],
                       backend=backend,
                       target_norm=0.5)()
        assert p.data_ptr() == ptr
        assert torch.allclose(_rows(p), want, atol=1e-6), (backend, name)
        if storage is not p:  # the values landed in the viewed storage
            assert torch.equal(
                storage[:, ::2] if name == 'slice' else storage.t(), p), name


@pytest.mark.parametrize('backend', ['loop', 'torch'])
@pytest.mark.parametrize('mode', ['coupled', 'decoupled'])
def test_shifted_step_writes_every_layout_in_place(backend, mode):
    for name, p, storage in _layouts():
        p.grad = torch.randn(p.shape).to(p.dtype)
        if name == 'channels_last':
            p.grad = p.grad.to(memory_format=torch.channels_last)
        w, g = p.detach().clone(), p.grad.clone()
        reg = ShiftedLpRegularizer([ShiftedLpEntry(name, p, 0.1)],
                                   eps=0.5,
                                   mode=mode,
                                   backend=backend)
        reg.step_([0.2] if mode == 'decoupled' else None)
        m = _rows(w)
        n = m.norm(dim=1, keepdim=True)
        delta = (0.1 * (1 - 0.5 / n) * m).view(w.shape)
        if mode == 'coupled':
            assert torch.allclose(p.grad, g + delta, atol=1e-6), name
            assert torch.equal(p.detach(), w)
        else:
            assert torch.allclose(p.detach(), w - 0.2 * delta, atol=1e-6), name
            if storage is not p:
                view = storage[:, ::2] if name == 'slice' else storage.t()
                assert torch.equal(view, p.detach()), name
