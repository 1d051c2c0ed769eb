"""Cost of WRS and of the eps-shifted regularizer, as ratios within one run.

(a) the rescale op over all invariant weights of a model: the default
    implementation (fused Triton kernel on CUDA, per-parameter loop on CPU),
    the same with ``rescale_optimizer_state`` for SGD-momentum and Adam
    buffers, the pure-torch packed reference, a naive per-parameter loop,
    against the floor: one ``torch._foreach_mul_`` over exactly the rescaled
    weights;
(b) a whole train step (forward, backward, SGD-momentum step) with plain weight
    decay, WRS at tau=1 and tau=10, the shifted-L2 regularizer, and SGDP
    (clovaai ``adamp``, which projects scale-invariant weights every step).

Models: plain-PyTorch ResNet-50 / VGG16-BN (torchvision layout, random data,
through ``wrs_mm.core`` only) and the mmdet YOLOv3 (``norm_eval=False``) /
Faster R-CNN R50 (``norm_eval=False, frozen_stages=-1``) from the installed
configs on real COCO images.

    python benchmarks/bench_wrs.py [--device cuda] [--amp bf16]
        [--channels-last] [--models resnet50 yolov3_d53] [--out bench.json]

Timings are synchronised (``torch.cuda.synchronize``), variants alternate
within every round so that drift hits all alike; medians and the
interquartile spread are reported. Prints JSON and a table.
"""
import argparse
import contextlib
import json
import os
import sys
import types

import torch

from wrs_mm.core import (RowEntry, ShiftedLpEntry, ShiftedLpRegularizer,
                         WeightRescaler, analyze_invariance,
                         rescale_optimizer_state)
from wrs_mm.testing.bench_utils import alternate
from wrs_mm.testing.mm_models import BN_TRAINED_DETECTORS, det_model_and_loss
from wrs_mm.testing.plain_models import PLAIN, plain_model_and_loss


def bench_op(params, rows, reps, device) -> dict:
    entries = [
        RowEntry(str(i), p, r) for i, (p, r) in enumerate(zip(params, rows))
    ]
    fast = WeightRescaler(entries)
    ref = WeightRescaler(entries, backend='torch')

    def naive():
        for p, r in zip(params, rows):
            m = p.view(r, -1)
            m.mul_(1 / torch.linalg.vector_norm(
                m, dim=1, keepdim=True, dtype=torch.float32))

    # rescale_optimizer_state=True: the op plus SGD's / Adam's buffers
    sgd = {p: dict(momentum_buffer=torch.zeros_like(p)) for p in params}
    adam = {
        p: dict(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        for p in params
    }
    opts = dict(
        sgd=types.SimpleNamespace(state=sgd),
        adam=types.SimpleNamespace(state=adam))

    fns = dict(
        wrs=fast,
        wrs_sgd_state=lambda: rescale_optimizer_state(opts['sgd'], fast()),
        wrs_adam_state=lambda: rescale_optimizer_state(opts['adam'], fast()),
        wrs_torch_reference=ref,
        floor=lambda: torch._foreach_mul_(params, 1.0),
        naive_loop=naive)
    if device.type == 'cuda':  # the same weights stored in bf16
        half = [p.detach().to(torch.bfloat16) for p in params]
        fns['wrs_bf16'] = WeightRescaler([
            RowEntry(str(i), p, r) for i, (p, r) in enumerate(zip(half, rows))
        ])
        fns['floor_bf16'] = lambda: torch._foreach_mul_(half, 1.0)
    with torch.no_grad():
        out = alternate(fns, reps, device, warmup=3)
    out['backend'] = fast.backends[0]
    return out


def bench_steps(model, loss_fn, inv, rounds, device, amp) -> dict:
    params = dict(model.named_parameters())
    inv_p = [params[v.name] for v in inv]
    inv_ids = {id(p) for p in inv_p}
    rest = [
        p for p in model.parameters()
        if id(p) not in inv_ids and p.requires_grad
    ]

    def sgd(wd_inv):
        return torch.optim.SGD(
            [dict(params=inv_p, weight_decay=wd_inv),
             dict(params=rest)],
            lr=1e-5,
            momentum=0.9,
            weight_decay=5e-4)

    wrs = WeightRescaler(
        [RowEntry(v.name, params[v.name], v.rows) for v in inv])
    reg = ShiftedLpRegularizer(
        [ShiftedLpEntry(v.name, params[v.name], 5e-4) for v in inv], eps=1e-3)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else \
        contextlib.nullcontext

    def step(opt, pre=None, post=None, tau=1):
        count = [0]

        def run():
            opt.zero_grad()
            with autocast():
                loss = loss_fn()
            loss.backward()
            if pre is not None:
                pre.step_()
            opt.step()
            count[0] += 1
            if post is not None and count[0] % tau == 0:
                post()

        return run

    variants = dict(
        wd=step(sgd(5e-4)),
        wrs_tau1=step(sgd(0.), post=wrs),
        wrs_tau10=step(sgd(0.), post=wrs, tau=10),
        shifted_l2=step(sgd(0.), pre=reg))
    try:
        from adamp import SGDP
        sgdp = step(
            SGDP(
                model.parameters(),
                lr=1e-5,
                momentum=0.9,
                weight_decay=5e-4,
                nesterov=True))
        sgdp()  # crashes on channels_last weights (a view in adamp)
        variants['sgdp'] = sgdp
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        print(f'SGDP left out: {type(e).__name__}: {e}', file=sys.stderr)
    return alternate(variants, rounds, device)


def build(name, args, device):
    if name in PLAIN:
        return plain_model_and_loss(name, args.batch, args.size_plain, device,
                                    args.channels_last)
    cfg, overrides = BN_TRAINED_DETECTORS[name]
    model, loss_fn = det_model_and_loss(
        cfg, size=args.size, batch=args.det_batch, model_overrides=overrides)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, loss_fn


def measure(name, args, device, amp) -> dict:
    """Op and step timings of model ``name`` (sizes from ``args``: batch,
    size_plain, det_batch, size, channels_last, rounds, op_reps), with the
    ratios."""
    model, loss_fn = build(name, args, device)
    inv = analyze_invariance(model, loss_fn).invariant()
    params = dict(model.named_parameters())
    ws = [params[v.name] for v in inv]
    op = bench_op([p.data for p in ws], [v.rows for v in inv], args.op_reps,
                  device)
    step = bench_steps(model, loss_fn, inv, args.rounds, device, amp)
    med = {k: v['median'] for k, v in step.items()}
    base = med['wd']
    ratios = dict(
        op_vs_floor=op['wrs']['median'] / op['floor']['median'],
        reference_vs_floor=(op['wrs_torch_reference']['median'] /
                            op['floor']['median']),
        op_vs_naive_loop=op['wrs']['median'] / op['naive_loop']['median'],
        op_sgd_state_vs_op=(op['wrs_sgd_state']['median'] /
                            op['wrs']['median']),
        op_adam_state_vs_op=(op['wrs_adam_state']['median'] /
                             op['wrs']['median']),
        step_wrs_tau1_vs_wd=med['wrs_tau1'] / base,
        step_wrs_tau10_vs_wd=med['wrs_tau10'] / base,
        step_shifted_vs_wd=med['shifted_l2'] / base)
    if 'wrs_bf16' in op:
        ratios['op_bf16_vs_floor_bf16'] = (
            op['wrs_bf16']['median'] / op['floor_bf16']['median'])
    if 'sgdp' in med:
        ratios['step_sgdp_vs_wd'] = med['sgdp'] / base
    return dict(
        invariant_weights=len(inv),
        invariant_mbytes=sum(p.numel() * p.element_size() for p in ws) / 1e6,
        op_seconds=op,
        step_seconds=step,
        ratios=ratios)


def kernel_report(device) -> list:
    """Registers and spills of every compiled kernel specialisation for the
    device's architecture (sm_90 without a GPU); printed as a table."""
    from wrs_mm.core import kernels
    if kernels.triton is None:
        print(
            'kernel report left out: Triton is not installed', file=sys.stderr)
        return []
    from wrs_mm.core.kernel_build import compile_all
    major, minor = torch.cuda.get_device_capability(device) \
        if device.type == 'cuda' else (9, 0)
    specs = compile_all(major * 10 + minor)
    print(f"\n{'kernel specialisation':<64} {'sm':>3} {'regs':>5} "
          f"{'spill st':>8} {'spill ld':>8} {'stack':>6}")
    for r in specs:
        print(f"{r['name']:<64} {r['sm']:>3} {r['registers']:>5} "
              f"{r['spill_stores']:>8} {r['spill_loads']:>8} {r['stack']:>6}")
    return specs


def print_table(results: dict) -> None:
    print(f"\ndevice: {results['device']}, amp: {results['amp']}, "
          f"channels_last: {results['channels_last']}")
    print(f"{'model':<16} {'weights':>7} {'op us':>7} {'floor us':>8} "
          f"{'op/floor':>8} {'ref/floor':>9} {'op/naive':>8} "
          f"{'+sgd st':>7} {'+adam st':>8} {'WRS1':>7} "
          f"{'WRS10':>7} {'shift':>7} {'SGDP':>7}")
    for name, r in results['models'].items():
        q, o = r['ratios'], r['op_seconds']
        sgdp = f"{q['step_sgdp_vs_wd'] - 1:>+7.1%}" if 'step_sgdp_vs_wd' in q \
            else f"{'-':>7}"
        print(f"{name:<16} {r['invariant_weights']:>7} "
              f"{o['wrs']['median'] * 1e6:>7.0f} "
              f"{o['floor']['median'] * 1e6:>8.0f} {q['op_vs_floor']:>8.2f} "
              f"{q['reference_vs_floor']:>9.2f} {q['op_vs_naive_loop']:>8.2f} "
              f"{q['op_sgd_state_vs_op']:>7.2f} "
              f"{q['op_adam_state_vs_op']:>8.2f} "
              f"{q['step_wrs_tau1_vs_wd'] - 1:>+7.1%} "
              f"{q['step_wrs_tau10_vs_wd'] - 1:>+7.1%} "
              f"{q['step_shifted_vs_wd'] - 1:>+7.1%} {sgdp}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument(
        '--models',
        nargs='*',
        default=[*PLAIN, *BN_TRAINED_DETECTORS],
        choices=[*PLAIN, *BN_TRAINED_DETECTORS],
        help='none: the kernel report only')
    ap.add_argument('--batch', type=int, default=32, help='plain models')
    ap.add_argument('--size-plain', type=int, default=224)
    ap.add_argument('--det-batch', type=int, default=2)
    ap.add_argument('--size', type=int, default=320, help='mmdet models')
    ap.add_argument(
        '--amp',
        choices=['bf16', 'fp16'],
        default=None,
        help='autocast dtype of the train steps')
    ap.add_argument('--channels-last', action='store_true')
    ap.add_argument('--rounds', type=int, default=8)
    ap.add_argument('--op-reps', type=int, default=20)
    ap.add_argument('--out', default=None)
    ap.add_argument(
        '--no-kernel-report',
        dest='kernel_report',
        action='store_false',
        help='skip compiling the Triton kernels for their registers / spills')
    args = ap.parse_args()
    device = torch.device(args.device)
    amp = dict(bf16=torch.bfloat16, fp16=torch.float16).get(args.amp)
    if device.type == 'cpu':
        torch.set_num_threads(os.cpu_count() or 1)
    results = dict(
        device=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                else f'cpu ({torch.get_num_threads()} threads)'),
        torch=torch.__version__,
        amp=args.amp,
        channels_last=args.channels_last,
        models={})
    for name in args.models:
        results['models'][name] = measure(name, args, device, amp)
    if args.kernel_report:
        results['kernels'] = kernel_report(device)
    print(json.dumps(results, indent=1))
    print_table(results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
