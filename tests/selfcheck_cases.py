"""The first-use self-check of the Triton kernels with a kernel made to fail
and one made to write wrong values, against the torch reference. Run as a
script under Triton's interpreter (``TRITON_INTERPRET=1 python
selfcheck_cases.py``); prints one JSON line per case."""
import json
import warnings

import torch

from wrs_mm.core import (RowEntry, ShiftedLpEntry, ShiftedLpRegularizer,
                         WeightRescaler, kernels)
from kernel_cases import ROWS, _max_diff, _params

REAL = dict(rescale=kernels.rescale_rows, shifted=kernels.shifted_l2_rows)


def broken(kind: str, how: str):
    """A kernel that raises, or runs and then corrupts what it wrote."""

    def kernel(table, *args, **kwargs):
        if how == 'raises':
            raise RuntimeError('made to fail')
        out = REAL[kind](table, *args, **kwargs)
        for p in table.params:  # wrong values in every tensor it touched
            target = p.grad if kind == 'shifted' and args[-1] and \
                p.grad is not None else p
            target[(0, ) * target.dim()] += 0.25
        return out

    return kernel


def rescaler(ps, backend, self_check=True):
    return WeightRescaler(
        [RowEntry(f'p{i}', p, r) for i, (p, r) in enumerate(zip(ps, ROWS))],
        backend=backend,
        self_check=self_check)


def regularizer(ps, backend, mode, self_check=True):
    return ShiftedLpRegularizer([
        ShiftedLpEntry(f'p{i}', p, 0.1 * (i + 1), i % 2 == 1)
        for i, p in enumerate(ps)
    ],
                                eps=0.5,
                                mode=mode,
                                backend=backend,
                                self_check=self_check)


def run(kind, how, mode=None, self_check=True, calls=2, dtype=torch.float32):
    """Outcome of ``calls`` steps with the kernel ``how`` ('ok', 'raises',
    'wrong') against the same steps by the torch backend."""
    results = {}
    for backend in ('torch', 'triton'):
        ps = _params('cpu', dtype, seed=1, grads=kind == 'shifted')
        op = rescaler(ps, backend, self_check) if kind == 'rescale' else \
            regularizer(ps, backend, mode, self_check)
        name = 'rescale_rows' if kind == 'rescale' else 'shifted_l2_rows'
        if backend == 'triton' and how != 'ok':
            setattr(kernels, name, broken(kind, how))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for c in range(calls):
                if kind == 'rescale':
                    op()
                else:
                    op.step_([0.01 * (c + 1)] *
                             len(ps) if mode == 'decoupled' else None)
                    for p in ps:  # fresh gradients each step
                        if p.grad is not None:
                            p.grad.mul_(0.5)
        setattr(kernels, name, REAL[kind])
        results[backend] = dict(
            tensors=[p.detach().clone() for p in ps] +
            [p.grad.clone() for p in ps if p.grad is not None],
            backends=op.backends,
            warnings=[
                str(w.message) for w in caught
                if 'Triton kernel' in str(w.message)
            ])
    t = results['triton']
    return dict(
        diff=_max_diff(t['tensors'], results['torch']['tensors']),
        backends=t['backends'],
        warnings=t['warnings'])


if __name__ == '__main__':
    cases = {}
    for how in ('ok', 'raises', 'wrong'):
        cases[f'rescale_{how}'] = run('rescale', how)
        for mode in ('coupled', 'decoupled'):
            cases[f'shifted_{mode}_{how}'] = run('shifted', how, mode)
    for dtype in (torch.bfloat16, torch.float16):  # no false alarm
        name = str(dtype).split('.')[1]
        cases[f'rescale_ok_{name}'] = run('rescale', 'ok', dtype=dtype)
        for mode in ('coupled', 'decoupled'):
            cases[f'shifted_{mode}_ok_{name}'] = run(
                'shifted', 'ok', mode, dtype=dtype)
    cases['rescale_wrong_unchecked'] = run(
        'rescale', 'wrong', self_check=False)
    cases['shifted_coupled_wrong_unchecked'] = run(
        'shifted', 'wrong', 'coupled', self_check=False)
    print(json.dumps(cases))
