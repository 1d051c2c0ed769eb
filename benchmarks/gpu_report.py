"""One-command GPU report: the CUDA tests, the fused kernels' op time against
the ``_foreach_mul_`` floor, the per-step overhead of WRS / shifted-L2 / SGDP
against plain weight decay, and every kernel's registers and spills; one JSON
file and a table, with the project's goals marked met or missed.

    make gpu-report            # = python benchmarks/gpu_report.py
    python benchmarks/gpu_report.py [--out docs/gpu_report.json] [--quick]

Each measurement runs its benchmark script in its own process (medians,
every row alternating its variants within every round):

* op: all scale-invariant weights of ResNet-50 and VGG16-BN (plain PyTorch),
  fp32 and bf16 weights; goal op <= 1.5 x floor;
* step: ResNet-50 bf16 autocast at batch 32 and 128, VGG16-BN bf16 at batch
  64 (224 px), mmdet YOLOv3 at 608 px batch 8; arms WRS tau=1, WRS tau=10,
  shifted-L2, SGDP; goals on ResNet-50 b32 bf16: WRS tau=1 <= +1 %,
  shifted-L2 <= +2 % per step (op and step: ``bench_wrs.py``, one process
  per row, and one more for every kernel's registers and spills);
* optimizer: ``bench_optimizer_step.py`` on the GPU: the
  shipped YOLOv3, Faster R-CNN and CIFAR VGG configs' optimizer step with
  wrs_mm's constructor against mmengine's default, param groups,
  ``_foreach_*`` ops, CUDA kernel launches and step time; goal: ops within
  2x of the default's.

About 6 minutes on one H100 after install. ``--quick`` shrinks every size
(for checking the script itself, e.g. on CPU; its numbers mean nothing).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: (row name, model, sizes) of the step / op measurements
ROWS = [
    ('resnet50_b32_bf16', 'resnet50', dict(batch=32, amp='bf16')),
    ('resnet50_b128_bf16', 'resnet50', dict(batch=128, amp='bf16')),
    ('vgg16_bn_b64_bf16', 'vgg16_bn', dict(batch=64, amp='bf16')),
    ('yolov3_608_b8', 'yolov3_d53', dict(det_batch=8, size=608, amp=None)),
]
OP_GOAL, TAU1_GOAL, SHIFTED_GOAL = 1.5, 0.01, 0.02
#: wrs_mm's foreach ops per optimizer step / mmengine's default constructor's
GROUPS_GOAL = 2.


def cuda_tests() -> dict:
    """The suite's CUDA-only tests (``cuda`` in their names), one status
    each, from pytest's JUnit XML."""
    with tempfile.TemporaryDirectory() as d:
        xml = os.path.join(d, 'junit.xml')
        cmd = [
            sys.executable, '-m', 'pytest', '-q', '-k', 'cuda', '-p',
            'no:cacheprovider', f'--junitxml={xml}',
            os.path.join(ROOT, 'tests', 'test_kernels.py'),
            os.path.join(ROOT, 'tests', 'test_core_invariance.py')
        ]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        cases = []
        if os.path.isfile(xml):
            for case in ET.parse(xml).iter('testcase'):
                status = 'passed'
                for tag in ('failure', 'error', 'skipped'):
                    if case.find(tag) is not None:
                        status = tag
                cases.append(dict(name=case.get('name'), status=status))
    return dict(
        returncode=proc.returncode,
        seconds=time.time() - t0,
        cases=cases,
        tail=(proc.stdout + proc.stderr)[-2000:])


def run_benchmark(script: str, *args: str) -> dict:
    """The JSON that ``benchmarks/<script>`` writes to ``--out``, run in its
    own process."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, 'result.json')
        subprocess.run(
            [sys.executable,
             os.path.join(HERE, script), *args, '--out', out],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)


def optimizer_steps(quick: bool) -> dict:
    """``bench_optimizer_step.py`` on the shipped configs."""
    if quick:
        return run_benchmark('bench_optimizer_step.py', '--rounds', '3',
                             '--configs', 'cifar_vgg16_bn')
    return run_benchmark('bench_optimizer_step.py', '--rounds', '50')


def bench_row(model: str, row: dict, device: str, quick: bool) -> dict:
    """``bench_wrs.py``'s measurement of ``model`` at the row's sizes."""
    sizes = dict(
        batch=32, size_plain=224, det_batch=8, size=608, rounds=10, op_reps=30)
    sizes.update({k: v for k, v in row.items() if k != 'amp'})
    if quick:
        sizes.update(
            batch=2, size_plain=64, det_batch=1, size=96, rounds=2, op_reps=3)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
    if row.get('amp'):
        args.append(f"--amp={row['amp']}")
    return run_benchmark('bench_wrs.py', '--device', device, '--models', model,
                         '--no-kernel-report', *args)['models'][model]


def goals(report: dict) -> list:
    """The project's goals, each with its measured value and whether it is
    met."""
    q = {k: r['ratios'] for k, r in report['rows'].items()}
    r50 = q['resnet50_b32_bf16']

    def goal(text, value, limit):
        return dict(goal=text, value=value, met=value <= limit)

    out = []
    for row, m in (('resnet50_b32_bf16', 'ResNet-50'), ('vgg16_bn_b64_bf16',
                                                        'VGG16-BN')):
        out.append(
            goal(f'{m} op fp32 <= {OP_GOAL}x floor', q[row]['op_vs_floor'],
                 OP_GOAL))
        if 'op_bf16_vs_floor_bf16' in q[row]:
            out.append(
                goal(f'{m} op bf16 <= {OP_GOAL}x floor',
                     q[row]['op_bf16_vs_floor_bf16'], OP_GOAL))
    out += [
        goal('ResNet-50 b32 bf16 step, WRS tau=1 <= +1 %',
             r50['step_wrs_tau1_vs_wd'] - 1, TAU1_GOAL),
        goal('ResNet-50 b32 bf16 step, shifted-L2 <= +2 %',
             r50['step_shifted_vs_wd'] - 1, SHIFTED_GOAL)
    ]
    for name, r in report['optimizer_step']['rows'].items():
        out.append(
            goal(
                f'{name} foreach ops per optimizer step <= {GROUPS_GOAL:g}x '
                "mmengine's default constructor", r['wrs_mm']['foreach_ops'] /
                r['mmengine_default']['foreach_ops'], GROUPS_GOAL))
    return out


def print_report(report: dict, out: str) -> None:
    print(f"\ndevice: {report['device']}, torch {report['torch']}")
    if report['tests'] is not None:
        t = report['tests']
        counts = {}
        for c in t['cases']:
            counts[c['status']] = counts.get(c['status'], 0) + 1
        print(f"CUDA tests: {counts} (exit {t['returncode']})")
    print(f"{'row':<20} {'op/floor':>8} {'bf16 op/fl':>10} {'WRS1':>7} "
          f"{'WRS10':>7} {'shifted':>7} {'SGDP':>7}")
    for name, row in report['rows'].items():
        r = row['ratios']
        sgdp = f"{r['step_sgdp_vs_wd'] - 1:>+7.1%}" \
            if 'step_sgdp_vs_wd' in r else f"{'-':>7}"
        bf16 = f"{r['op_bf16_vs_floor_bf16']:>10.2f}" \
            if 'op_bf16_vs_floor_bf16' in r else f"{'-':>10}"
        print(f"{name:<20} {r['op_vs_floor']:>8.2f} {bf16} "
              f"{r['step_wrs_tau1_vs_wd'] - 1:>+7.1%} "
              f"{r['step_wrs_tau10_vs_wd'] - 1:>+7.1%} "
              f"{r['step_shifted_vs_wd'] - 1:>+7.1%} {sgdp}")
    print(f"{'optimizer step':<26} {'groups':>9} {'foreach':>9} "
          f"{'launches':>11} {'step ratio':>10}")
    for name, r in report['optimizer_step']['rows'].items():
        d, w = r['mmengine_default'], r['wrs_mm']
        launches = f"{d.get('kernel_launches', '-')}/" \
            f"{w.get('kernel_launches', '-')}"
        print(f"{name:<26} {d['groups_with_params']:>4}/"
              f"{w['groups_with_params']:<4} {d['foreach_ops']:>4}/"
              f"{w['foreach_ops']:<4} {launches:>11} "
              f"{r['step_ratio']:>10.2f}")
    for g in report['goals']:
        print(f"{'met   ' if g['met'] else 'MISSED'} {g['goal']}: "
              f"{g['value']:.3g}")
    print(f"{report['seconds']:.0f} s; {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--out', default='docs/gpu_report.json')
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--skip-tests', action='store_true')
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('gpu_report: no CUDA device (use --device cpu '
                         '--quick to check the script itself)')
    t0 = time.time()
    report = dict(
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'cpu'),
        torch=torch.__version__,
        quick=args.quick,
        tests=None if args.skip_tests else cuda_tests(),
        rows={})
    for name, model, row in ROWS:
        report['rows'][name] = bench_row(model, row, args.device, args.quick)
    report['kernels'] = run_benchmark('bench_wrs.py', '--device', args.device,
                                      '--models').get('kernels', [])
    report['optimizer_step'] = optimizer_steps(args.quick)
    report['goals'] = goals(report)
    report['seconds'] = time.time() - t0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=1)
    print_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
