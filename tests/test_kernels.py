"""The fused Triton kernels against the pure-torch reference: compiled on a
CUDA device, and under Triton's interpreter on CPU; and the CPU 'loop' path."""
import json
import os
import subprocess
import sys

import pytest
import torch

from wrs_mm.core import kernels
from wrs_mm.core.compat import MIN_TRITON, version_tuple
from kernel_cases import all_diffs

HERE = os.path.dirname(__file__)
cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='cuda-only: needs a CUDA device')
try:
    import triton
    TRITON = triton.__version__
except ImportError:  # the suite needs it: the tests below then fail
    TRITON = None
OLD_TRITON = TRITON is not None and version_tuple(TRITON) < MIN_TRITON[0]
#: the kernels run only on Triton >= 3.0; torch 2.1 ships Triton 2.1
needs_triton = pytest.mark.skipif(
    OLD_TRITON,
    reason=f'the fused kernels (Triton {TRITON} here) needs Triton >= '
    f'{MIN_TRITON[0][0]}.{MIN_TRITON[0][1]}')


def _check(diffs):
    for k in ('rescale_fp32', 'rescale_bf16', 'rescale_targets_fp32',
              'rescale_init_bf16'):
        tol = 1e-6 if 'fp32' in k else 1e-2  # bf16: one rounding step
        assert diffs[k]['weights'] < tol, (k, diffs[k])
        assert diffs[k]['stats'] < 1e-5, (k, diffs[k])
        assert diffs[k]['zero_rows'] == 1
        # every rescaled row at its weight's target norm
        assert diffs[k]['target_error'] < (1e-5 if 'fp32' in k else
                                           1e-2), (k, diffs[k])
    for k in ('shifted_fp32', 'shifted_bf16'):
        tol = 1e-5 if 'fp32' in k else 2e-2  # bf16: 1-2 roundings
        assert len(diffs[k]) == 4
        for case, d in diffs[k].items():
            assert d < tol, (k, case, d)


def _interpreted(script: str, *args) -> str:
    """Last stdout line of a script of this folder run on CPU under Triton's
    interpreter (it must be set before Triton is imported)."""
    env = dict(
        os.environ,
        TRITON_INTERPRET='1',
        CUDA_VISIBLE_DEVICES='',
        PYTHONPATH=os.pathsep.join(
            [HERE] + os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    res = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


@needs_triton
def test_triton_kernels_in_interpreter_match_reference():
    diffs = json.loads(_interpreted('kernel_cases.py', 'cpu'))
    _check(diffs)
    # channels_last weights: the kernels write the permuted rows in place;
    # rows with gaps (a slice, a transpose): refused, by both ops
    layouts = diffs['layouts']
    assert layouts['channels_last'] < 1e-6 and \
        layouts['channels_last_layout'], layouts
    assert len(layouts['refused']) == 4
    for msg in layouts['refused']:
        assert 'rows are contiguous blocks' in msg, msg


def test_loop_backend_matches_reference_on_cpu():
    _check(all_diffs('cpu', 'loop'))


@cuda_only
def test_cuda_triton_kernels_match_reference():
    _check(all_diffs('cuda', 'triton'))


@cuda_only
def test_cuda_loop_backend_matches_reference():
    _check(all_diffs('cuda', 'loop'))


@needs_triton
def test_first_use_self_check_falls_back_on_a_failing_or_wrong_kernel():
    cases = json.loads(_interpreted('selfcheck_cases.py'))
    for name, c in cases.items():
        if '_ok' in name:  # a correct kernel passes, in every dtype
            assert c['backends'] == ['triton'] * len(c['backends']), name
            assert not c['warnings'], (name, c['warnings'])
            tol = 2e-2 if name.endswith('float16') else 1e-6
            assert c['diff'] < tol, (name, c['diff'])
        elif name.endswith('_unchecked'):  # without the check it goes wrong
            assert c['diff'] > 0.01 and not c['warnings'], (name, c)
        else:  # caught: one warning, torch from then on, nothing corrupted
            assert set(c['backends']) == {'torch'}, name
            assert c['diff'] == 0, (name, c['diff'])
            w, = c['warnings']
            what = 'raised RuntimeError: made to fail' if 'raises' in name \
                else 'away from the reference'
            for part in (what, 'cpu (Triton interpreter)', 'Triton 3.',
                         f'torch {torch.__version__}', "'torch' backend"):
                assert part in w, (name, part, w)


@needs_triton
@pytest.mark.parametrize('capability', [80, 90])
def test_every_kernel_specialisation_compiles_without_a_gpu(capability):
    """Triton's compiler and its bundled ptxas build every variant the code
    can launch (all dtypes and flags, generic and 16-byte-aligned pointers)
    into cubins for sm_80 / sm_90; none spills registers."""
    from wrs_mm.core.kernel_build import compile_all, specializations
    if kernels.triton is None:
        pytest.fail('Triton is not installed (setup.py extra "tests")')
    rows = compile_all(capability)
    dtypes = len(kernels.DTYPES)
    assert len(rows) == len(list(specializations())) == dtypes * (2 + 4) * 2
    assert len({r['name'] for r in rows}) == len(rows)
    for r in rows:
        assert r['sm'] == capability and r['cubin_bytes'] > 1000, r
        assert 0 < r['registers'] <= 255, r
        assert r['spill_stores'] == r['spill_loads'] == 0, r


def test_triton_older_than_the_kernels_need_is_refused_by_name():
    """Triton 2.x (what torch 2.1 ships): the kernels are unavailable (so
    ``backend='auto'`` keeps the torch implementations) and
    ``backend='triton'`` is refused, naming the Triton release needed and
    the one installed; a Triton >= 3.0 runs them (here under its
    interpreter, on CPU)."""
    code = (
        'import torch\n'
        'from wrs_mm.core import RowEntry, WeightRescaler, kernels\n'
        "entry = RowEntry('w', torch.nn.Parameter(torch.randn(4, 3)), 4)\n"
        'try:\n'
        "    print(WeightRescaler([entry], backend='triton').backends)\n"
        'except ValueError as e:\n'
        "    print('refused:', e)\n"
        "print(kernels.available(torch.device('cpu')), kernels.UNAVAILABLE)\n")
    res = subprocess.run([sys.executable, '-c', code],
                         env=dict(os.environ, TRITON_INTERPRET='1'),
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    triton_line, available = res.stdout.strip().splitlines()[-2:]
    if OLD_TRITON:
        for part in ('refused:', 'needs Triton >= 3.0', f'Triton {TRITON} '
                     'is older than 3.0', 'torch >= 2.4 ships it'):
            assert part in triton_line, (part, triton_line)
        assert available.startswith(f'False Triton {TRITON} is older'), \
            available
    else:
        assert triton_line == "['triton']", triton_line
        assert available == 'True None', available
