"""The param groups of ``WRSOptimWrapperConstructor``: merged by settings,
with a group per wrs_mm role, and every parameter trained exactly as with
the one-group-per-parameter layout wrs_mm had before
(``per_param.PerParamWRSConstructor``), under schedules, ``paramwise_cfg``,
AdamW, accumulation, AMP and resume, including the resume of a checkpoint
written by that code (``tests/data/per_param_groups``)."""
import os.path as osp
from unittest import mock

import per_param  # noqa: F401
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import wrs_mm  # noqa: F401
from wrs_mm.core.param_groups import CLASS, ROLE, group_index
from wrs_mm.engine.param_groups import NAMES
from wrs_mm.engine.plugin import unwrap
from wrs_mm.testing.bench_utils import count_ops
import toy
from conftest import CPU_GRAD_SCALER

#: checkpoints of the per-parameter layout, by the torch that wrote them
LEGACY = osp.join(
    osp.dirname(__file__), 'data', 'per_param_groups',
    'torch-' + torch.__version__.split('+')[0])
PER_PARAM = 'PerParamWRSConstructor'
SETTINGS = ('lr', 'weight_decay', 'momentum', 'betas', ROLE)


class SettingsRecorder(Hook):
    """Each parameter's group settings at every iteration, as its optimizer
    step saw them (after the first forward has moved the claimed weights,
    before the param schedulers move on)."""
    priority = 'HIGHEST'

    def __init__(self):
        self.steps = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        index = group_index(runner.optim_wrapper.optimizer)
        self.steps.append({
            n: tuple(index[id(p)].get(k) for k in SETTINGS)
            for n, p in unwrap(runner.model).named_parameters()
        })


def train(cfg, amp=False):
    """A trained Runner of ``cfg``, with the settings each step saw."""
    recorder = SettingsRecorder()
    if amp:  # bf16 autocast and a CPU GradScaler; the 3rd loss is inf
        cfg['model']['inf_at_call'] = 3
        cfg['optim_wrapper'].update(type='AmpOptimWrapper', dtype='bfloat16')
        with mock.patch(
                'mmengine.optim.optimizer.amp_optimizer_wrapper.'
                'is_cuda_available',
                return_value=True):
            runner = Runner.from_cfg(cfg)
            runner.optim_wrapper = runner.build_optim_wrapper(
                runner.optim_wrapper)
        runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu')
    else:
        runner = Runner.from_cfg(cfg)
    runner.register_hook(recorder)
    runner.train()
    return runner, recorder.steps


def optimizer_state(runner) -> dict:
    """``{parameter name: its optimizer state}``."""
    opt = runner.optim_wrapper.optimizer
    return {
        n: opt.state[p]
        for n, p in unwrap(runner.model).named_parameters() if p in opt.state
    }


def assert_same_training(a, b) -> None:
    """Bitwise equal parameters, buffers and optimizer state."""
    toy.assert_same_state(a.model, b.model)
    sa, sb = optimizer_state(a), optimizer_state(b)
    assert sa.keys() == sb.keys() and sa
    for name in sa:
        assert sa[name].keys() == sb[name].keys(), name
        for k in sa[name]:
            assert torch.equal(sa[name][k], sb[name][k]), (name, k)


def layout(runner) -> list:
    """The groups as (class, role, parameter names)."""
    names = {id(p): n for n, p in unwrap(runner.model).named_parameters()}
    return [(g.get(CLASS), g.get(ROLE),
             sorted(names[id(p)].replace('net.', '') for p in g['params']))
            for g in runner.optim_wrapper.optimizer.param_groups]


def test_groups_are_merged_by_settings_with_a_group_per_role(tmp_path):
    """Three settings classes (default, BN without decay, the head at half
    the lr and twice the decay), a WRS and a shifted-L2 group for the two
    classes with weights; conv1 moves into WRS's, conv2 into the
    regularizer's."""
    runner, _ = train(toy.layout_case_cfg(tmp_path, max_iters=1))
    assert layout(runner) == [
        (0, None, ['conv1.bias']),
        (1, None, ['bn1.bias', 'bn1.weight', 'bn2.bias', 'bn2.weight']),
        (2, None, ['fc.bias', 'fc.weight']),
        (0, 'wrs', ['conv1.weight']),
        (0, 'shifted_lp', ['conv2.weight']),
        (2, 'wrs', []),
        (2, 'shifted_lp', []),
    ]
    groups = runner.optim_wrapper.optimizer.param_groups
    assert [g['weight_decay'] for g in groups] == [5e-4, 0, 1e-3, 0, 0, 0, 0]
    # an empty group launches no multi-tensor op
    opt = runner.optim_wrapper.optimizer
    for p in runner.model.parameters():
        p.grad = torch.ones_like(p)
    ops = foreach_ops(opt)
    opt.param_groups = [g for g in groups if g['params']]
    assert len(opt.param_groups) == 5 and foreach_ops(opt) == ops > 0


def foreach_ops(optimizer) -> int:
    return count_ops(optimizer.step)['foreach_ops']


CASES = {
    'sgd_foreach': {},
    'adamw_decoupled_accumulated':
    dict(
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=5e-2, foreach=True),
        shifted_mode='decoupled',
        optim_wrapper=dict(accumulative_counts=2),
        max_iters=8),
}


@pytest.mark.parametrize('case', list(CASES))
def test_every_parameter_trains_as_with_one_group_per_parameter(
        tmp_path, case):
    """Same parameters, buffers, optimizer state (momentum, Adam moments,
    rescaled with the weights) and, at every step, the same lr, decay and
    momentum per parameter."""
    kw = CASES[case]
    merged, seen = train(toy.layout_case_cfg(tmp_path / 'merged', **kw))
    reference, seen_pp = train(
        toy.layout_case_cfg(tmp_path / 'per_param', PER_PARAM, **kw))
    assert len(seen) == kw.get('max_iters', 6)
    assert seen == seen_pp
    assert_same_training(merged, reference)
    assert sum(
        bool(g['params'])
        for g in merged.optim_wrapper.optimizer.param_groups) == 5
    assert len(reference.optim_wrapper.optimizer.param_groups) == 9


@CPU_GRAD_SCALER
def test_amp_trains_as_with_one_group_per_parameter(tmp_path):
    """bf16 autocast with a GradScaler that skips the step of an inf loss."""
    merged, seen = train(toy.layout_case_cfg(tmp_path / 'merged'), amp=True)
    reference, seen_pp = train(
        toy.layout_case_cfg(tmp_path / 'per_param', PER_PARAM), amp=True)
    assert len(seen) == 6 and seen == seen_pp
    assert merged.optim_wrapper.loss_scaler.get_scale() < 2.**16  # skipped
    assert_same_training(merged, reference)


def test_resume_keeps_the_merged_layout_exactly(tmp_path):
    """The checkpoint names the parameters of each saved group; the resumed
    run takes the saved layout before loading, and ends bitwise where the
    uninterrupted run does."""
    full, seen = train(toy.layout_case_cfg(tmp_path / 'full'))
    ckpt = torch.load(tmp_path / 'full' / 'iter_3.pth', weights_only=False)
    saved = ckpt['optimizer']
    assert len(saved[NAMES]) == 9 and len(saved['param_groups']) == 7
    resumed, seen_resumed = train(
        toy.layout_case_cfg(
            tmp_path / 'resumed',
            load_from=str(tmp_path / 'full' / 'iter_3.pth'),
            resume=True))
    assert seen_resumed == seen[3:]
    assert layout(resumed) == layout(full)
    assert_same_training(full, resumed)


def test_resume_of_a_per_parameter_checkpoint_continues_as_it_was_trained(
        tmp_path):
    """A checkpoint of wrs_mm before the merged layout (7499571; one group
    per parameter, no names) resumes with one group per parameter: bitwise
    as a per-parameter optimizer continues it on this machine, and where
    that code's uninterrupted run ended up to the rounding of the CPU that
    wrote it (the same code differs by ~3e-8 on another x86 CPU). On one
    thread, as that run; written with this torch: 2.13.0, 2.1.2 and 2.15.0,
    the three environments of the tests."""
    assert osp.isdir(LEGACY), (
        f'no checkpoint written with torch {torch.__version__}: run '
        'tests/data/per_param_groups/make_checkpoint.py with it')
    ckpt = torch.load(osp.join(LEGACY, 'iter_3.pth'), weights_only=False)
    assert NAMES not in ckpt['optimizer']
    assert len(ckpt['optimizer']['param_groups']) == 9
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for constructor in ('WRSOptimWrapperConstructor', PER_PARAM):
            runs.append(
                train(
                    toy.layout_case_cfg(
                        tmp_path / constructor,
                        constructor,
                        load_from=osp.join(LEGACY, 'iter_3.pth'),
                        resume=True)))
    finally:
        torch.set_num_threads(threads)
    (resumed, seen), (reference, seen_pp) = runs
    assert len(seen) == 3 and seen == seen_pp
    groups = resumed.optim_wrapper.optimizer.param_groups
    assert [len(g['params']) for g in groups] == [1] * 9
    assert_same_training(resumed, reference)
    final = torch.load(osp.join(LEGACY, 'final.pt'))
    state = resumed.model.state_dict()
    assert final.keys() == state.keys()
    for k in final:
        torch.testing.assert_close(
            state[k], final[k], rtol=1e-5, atol=1e-6, msg=k)
    log = open(osp.join(resumed.log_dir, f'{resumed.timestamp}.log')).read()
    assert 'one optimizer param group per parameter (9' in log


def test_a_checkpoint_of_another_optimizer_is_refused(tmp_path):
    """A one-group state dict (mmengine's default constructor) is not
    silently mapped onto these parameters."""
    runner = Runner.from_cfg(toy.layout_case_cfg(tmp_path))
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    other = torch.optim.SGD(runner.model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match='has no parameter names'):
        wrapper.optimizer.load_state_dict(other.state_dict())
