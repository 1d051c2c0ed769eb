"""Cells of the manual's training-modes table that the feature tests do not
cover: NormDynamicsHook under AMP with a skipped step and under gradient
accumulation, the eps-shifted L2 and NormDynamicsHook on resume, and both
under the default Runner's DDP."""
import os
from unittest import mock

import torch
from mmengine.runner import Runner

import wrs_mm  # noqa: F401
from wrs_mm.engine import read_norm_dynamics
import toy
from conftest import CPU_GRAD_SCALER

NORM = dict(type='NormDynamicsHook', interval=1)
SHIFTED = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
    constructor='WRSOptimWrapperConstructor',
    paramwise_cfg=dict(shifted_reg=dict(eps=0.5)))


def _records(work_dir):
    return read_norm_dynamics(
        os.path.join(str(work_dir), 'norm_dynamics.jsonl'))


@CPU_GRAD_SCALER
def test_norm_dynamics_records_real_steps_under_amp(tmp_path):
    """The 3rd loss is inf: GradScaler skips that step, and the hook records
    5 steps in 6 iterations, none at the skipped one."""
    with mock.patch(
            'mmengine.optim.optimizer.amp_optimizer_wrapper.'
            'is_cuda_available',
            return_value=True):
        cfg = toy.runner_cfg(tmp_path, 6, hook=NORM)
        cfg['model']['inf_at_call'] = 3
        cfg['optim_wrapper']['type'] = 'AmpOptimWrapper'
        cfg['optim_wrapper']['dtype'] = 'bfloat16'
        runner = Runner.from_cfg(cfg)
        runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu')
    runner.train()
    assert [r['iter'] for r in _records(tmp_path)] == [1, 2, 4, 5, 6]


def test_norm_dynamics_records_once_per_accumulated_update(tmp_path):
    cfg = toy.runner_cfg(tmp_path, 8, hook=NORM)
    cfg['optim_wrapper']['accumulative_counts'] = 2
    Runner.from_cfg(cfg).train()
    assert [r['iter'] for r in _records(tmp_path)] == [2, 4, 6, 8]


def test_resume_with_shifted_regularizer_and_norm_dynamics_is_exact(tmp_path):
    full, resumed = toy.train_and_resume(tmp_path, NORM, SHIFTED)
    toy.assert_same_state(full.model, resumed.model)
    groups = resumed.optim_wrapper.optimizer.param_groups
    assert sum(
        len(g['params']) for g in groups
        if g.get('wrs_mm_role') == 'shifted_lp') == 2
    after = [r for r in _records(tmp_path / 'full') if r['iter'] > 3]
    assert _records(tmp_path / 'resumed') == after


def test_ddp_with_shifted_regularizer_and_norm_dynamics(tmp_path):
    """Identical ranks, and bitwise the training of one param group per
    parameter (``per_param.PerParamWRSConstructor``)."""
    toy.torchrun('ddp_train.py', [tmp_path, 'shifted'], 2)
    a, b = toy.load_identical_ranks(tmp_path)
    assert a['shifted_params'] == b['shifted_params'] == 2
    assert len(_records(tmp_path)) == 6  # rank 0 writes every step
    ref, _ = toy.load_identical_ranks(tmp_path / 'per_param')
    for key in ('params', 'buffers'):
        for k, v in a[key].items():
            assert torch.equal(v, ref[key][k]), k
