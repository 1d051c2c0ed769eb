"""Each implementation of WRS and of the shifted-L2 step against the pure-torch
reference, on one device. Imported by the tests, and run as a script under
Triton's interpreter (``TRITON_INTERPRET=1 python kernel_cases.py cpu``), which
prints one JSON line of maximal differences."""
import json
import sys

import torch

from wrs_mm.core import (RowEntry, ShiftedLpEntry, ShiftedLpRegularizer,
                         WeightRescaler)

SHAPES = [(8, 3, 3, 3), (16, 8, 3, 3), (16, 8, 3, 3), (32, 16), (4, 6),
          (6, 2500)]
ROWS = [8, 4, 16, 1, 2, 6]  # channel, group, channel, tensor, group, long


def _params(device, dtype, seed=0, grads=False):
    g = torch.Generator().manual_seed(seed)
    ps = [(torch.randn(s, generator=g) * 3).to(device, dtype) for s in SHAPES]
    ps[1] = ps[1].to(memory_format=torch.channels_last)
    ps[0][3] = 0  # a zero row
    if grads:
        for i, p in enumerate(ps):
            if i != 2:  # p2 has no gradient
                p.grad = torch.empty_like(p).copy_(
                    torch.randn(p.shape, generator=g))
    return ps


def _max_diff(a, b):
    """Largest difference relative to the tensor's scale (>= 1)."""
    return max(((x.float() - y.float()).abs().max() /
                y.float().abs().max().clamp(min=1)).item()
               for x, y in zip(a, b))


def rescale_diffs(device, backend, dtype=torch.float32) -> dict:
    """Weights and statistics after a rescale with ``backend`` vs 'torch'."""
    out = {}
    for k in ('torch', backend):
        ps = _params(device, dtype)
        st = WeightRescaler([
            RowEntry(f'p{i}', p, r) for i, (p, r) in enumerate(zip(ps, ROWS))
        ],
                            backend=k,
                            self_check=False)()  # the kernel itself
        out[k] = (ps, [
            st.norm_mean, st.norm_min, st.norm_max, st.zero_rows, st.rows
        ])
    return dict(
        weights=_max_diff(out['torch'][0], out[backend][0]),
        stats=max(
            abs(a - b) / max(abs(a), 1)
            for a, b in zip(out['torch'][1], out[backend][1])),
        zero_rows=out[backend][1][3])


def shifted_diffs(device, backend, dtype=torch.float32) -> dict:
    """Gradients / weights after one shifted-L2 step vs 'torch', for the
    plain and the weight-standardised form, coupled and decoupled."""
    diffs = {}
    for std in (False, True):
        for mode in ('coupled', 'decoupled'):
            res = {}
            for k in ('torch', backend):
                ps = _params(device, dtype, seed=1, grads=True)
                reg = ShiftedLpRegularizer([
                    ShiftedLpEntry(f'p{i}', p, 0.1 * (i + 1), std)
                    for i, p in enumerate(ps)
                ],
                                           eps=0.5,
                                           mode=mode,
                                           backend=k,
                                           self_check=False)
                lrs = [0.01 * (i + 1) for i in range(len(ps))]
                reg.step_(lrs if mode == 'decoupled' else None)
                reg.step_([2 * lr for lr in lrs] if mode == 'decoupled' else
                          None)  # a changed lr is picked up
                res[k] = [p.detach().clone() for p in ps] + \
                    [p.grad for p in ps if p.grad is not None]
            diffs[f"{'ws' if std else 'plain'}_{mode}"] = _max_diff(
                res['torch'], res[backend])
    return diffs


def all_diffs(device, backend) -> dict:
    return dict(
        rescale_fp32=rescale_diffs(device, backend),
        rescale_bf16=rescale_diffs(device, backend, torch.bfloat16),
        shifted_fp32=shifted_diffs(device, backend),
        shifted_bf16=shifted_diffs(device, backend, torch.bfloat16))


if __name__ == '__main__':
    print(json.dumps(all_diffs(sys.argv[1], 'triton')))
