"""The fused Triton kernels against the pure-torch reference: compiled on a
CUDA device, and under Triton's interpreter on CPU; and the CPU 'loop' path."""
import json
import os
import subprocess
import sys

import pytest
import torch

from kernel_cases import all_diffs

HERE = os.path.dirname(__file__)
cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='cuda-only: needs a CUDA device')


def _check(diffs):
    for k in ('rescale_fp32', 'rescale_bf16'):
        tol = 1e-6 if 'fp32' in k else 1e-2  # bf16: one rounding step
        assert diffs[k]['weights'] < tol, (k, diffs[k])
        assert diffs[k]['stats'] < 1e-5, (k, diffs[k])
        assert diffs[k]['zero_rows'] == 1
    for k in ('shifted_fp32', 'shifted_bf16'):
        tol = 1e-5 if 'fp32' in k else 2e-2  # bf16: 1-2 roundings
        assert len(diffs[k]) == 4
        for case, d in diffs[k].items():
            assert d < tol, (k, case, d)


def test_triton_kernels_in_interpreter_match_reference():
    env = dict(
        os.environ,
        TRITON_INTERPRET='1',
        CUDA_VISIBLE_DEVICES='',
        PYTHONPATH=os.pathsep.join(
            [HERE] + os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    res = subprocess.run(
        [sys.executable,
         os.path.join(HERE, 'kernel_cases.py'), 'cpu'],
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    _check(json.loads(res.stdout.strip().splitlines()[-1]))


def test_loop_backend_matches_reference_on_cpu():
    _check(all_diffs('cpu', 'loop'))


@cuda_only
def test_cuda_triton_kernels_match_reference():
    _check(all_diffs('cuda', 'triton'))


@cuda_only
def test_cuda_loop_backend_matches_reference():
    _check(all_diffs('cuda', 'loop'))
