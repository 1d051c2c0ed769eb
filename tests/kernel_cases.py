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


#: per-weight target norms of the target-norm cases (the zero row stays 0)
TARGETS = {f'p{i}': t for i, t in enumerate((0.5, 2., 1., 0.3, 3., 0.577))}


def rescale_diffs(device,
                  backend,
                  dtype=torch.float32,
                  target_norm=1.) -> dict:
    """Weights and statistics after a rescale with ``backend`` vs 'torch',
    and the largest relative distance of a rescaled row's norm from its
    target (``target_error``)."""
    out = {}
    for k in ('torch', backend):
        ps = _params(device, dtype)
        op = WeightRescaler([
            RowEntry(f'p{i}', p, r) for i, (p, r) in enumerate(zip(ps, ROWS))
        ],
                            backend=k,
                            self_check=False,
                            target_norm=target_norm)
        st = op()  # the kernel itself
        out[k] = (ps, [
            st.norm_mean, st.norm_min, st.norm_max, st.zero_rows, st.rows
        ], op.targets)
    ps, _, targets = out[backend]
    err = 0.
    for i, (p, r) in enumerate(zip(ps, ROWS)):
        norms = p.detach().float().reshape(r, -1).norm(dim=1)
        norms = norms[norms > 0]
        err = max(err, float((norms / targets[f'p{i}'] - 1).abs().max()))
    return dict(
        weights=_max_diff(out['torch'][0], out[backend][0]),
        stats=max(
            abs(a - b) / max(abs(a), 1)
            for a, b in zip(out['torch'][1], out[backend][1])),
        zero_rows=out[backend][1][3],
        target_error=err)


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


def layout_cases(device) -> dict:
    """The Triton backend on a channels_last weight (rescale and both
    shifted modes, against 'torch'), and its refusal of weights whose rows
    are not contiguous blocks (a slice, a transpose)."""
    out = {}
    for k in ('torch', 'triton'):
        torch.manual_seed(0)
        p = torch.randn(
            8, 4, 3, 3, device=device).to(memory_format=torch.channels_last)
        q = p.detach().clone()
        q.grad = torch.randn_like(q)
        WeightRescaler([RowEntry('p', p, 8)],
                       backend=k,
                       self_check=False,
                       target_norm=0.5)()
        ShiftedLpRegularizer([ShiftedLpEntry('q', q, 0.1)],
                             eps=0.5,
                             mode='coupled',
                             backend=k,
                             self_check=False).step_()
        out[k] = [p, q.grad]
    refused = []
    base = torch.randn(8, 6, 3, 3, device=device)
    for view in (base[:, ::2], torch.randn(5, 8, device=device).t()):
        for make in (
                lambda v: WeightRescaler([RowEntry('v', v, 8)],
                                         backend='triton'),
                lambda v: ShiftedLpRegularizer(
                    [ShiftedLpEntry('v', v, 0.1)], eps=0.5, backend='triton')):
            try:
                make(view)
                refused.append('accepted')
            except ValueError as e:
                refused.append(str(e))
    return dict(
        channels_last=_max_diff(out['torch'], out['triton']),
        channels_last_layout=out['triton'][0].is_contiguous(
            memory_format=torch.channels_last),
        refused=refused)


def all_diffs(device, backend) -> dict:
    return dict(
        rescale_fp32=rescale_diffs(device, backend),
        rescale_bf16=rescale_diffs(device, backend, torch.bfloat16),
        rescale_targets_fp32=rescale_diffs(
            device, backend, target_norm=TARGETS),
        rescale_init_bf16=rescale_diffs(
            device, backend, torch.bfloat16, target_norm='init'),
        shifted_fp32=shifted_diffs(device, backend),
        shifted_bf16=shifted_diffs(device, backend, torch.bfloat16))


if __name__ == '__main__':
    print(
        json.dumps(
            dict(
                all_diffs(sys.argv[1], 'triton'),
                layouts=layout_cases(sys.argv[1]))))
