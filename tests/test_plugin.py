"""WRSPlugin: one per optimizer wrapper, callbacks in the named order, the
analysis handed out in SETUP_ORDER, every hook removed at the end, the step
wrapper composed with the LR schedulers' counting wrappers, and the steps
seen after dynamo has stripped torch's optimizer hooks (torch 2.1)."""
import warnings

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner

from wrs_mm.core.plugin import (NORM_DYNAMICS, POST_STEP_ORDER, PRE_STEP_ORDER,
                                SHIFTED_REG, WEIGHT_RESCALE)
from wrs_mm.engine.plugin import PLUGINS, WRSPlugin
import toy
from conftest import BNNet


def _plugin():
    torch.manual_seed(0)
    model = BNNet().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapper = OptimWrapper(optimizer)
    return model, optimizer, wrapper


def test_one_plugin_per_wrapper_and_callbacks_in_named_order():
    model, optimizer, wrapper = _plugin()
    plugin = WRSPlugin.of(wrapper, model)
    assert WRSPlugin.of(wrapper, model) is plugin
    assert PLUGINS[wrapper] is plugin and not [
        k for k in vars(wrapper) if 'wrs' in k
    ]  # kept in the module's table, not on the wrapper
    calls = []
    # registered in the reverse of the documented order
    plugin.on_step(WEIGHT_RESCALE, post=lambda: calls.append('wrs post'))
    plugin.on_step(
        NORM_DYNAMICS,
        pre=lambda: calls.append('norm pre'),
        post=lambda: calls.append('norm post'))
    plugin.on_step(SHIFTED_REG, pre=lambda: calls.append('shifted pre'))
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    optimizer.step()
    assert calls == ['shifted pre', 'norm pre', 'norm post', 'wrs post']
    assert PRE_STEP_ORDER == (SHIFTED_REG, NORM_DYNAMICS)
    assert POST_STEP_ORDER == (NORM_DYNAMICS, WEIGHT_RESCALE)
    plugin.remove(NORM_DYNAMICS)
    calls.clear()
    optimizer.step()
    assert calls == ['shifted pre', 'wrs post']
    plugin.remove()
    assert 'step' not in vars(optimizer)  # the class's step again
    optimizer.step()
    assert calls == ['shifted pre', 'wrs post']


def test_analysis_on_first_training_forward_in_setup_order():
    model, optimizer, wrapper = _plugin()
    plugin = WRSPlugin.of(wrapper, model)
    got = []
    plugin.on_analysis(WEIGHT_RESCALE, lambda r: got.append(('wrs', r)))
    plugin.on_analysis(SHIFTED_REG, lambda r: got.append(('shifted', r)))
    model.eval()
    model(torch.randn(4, 3, 8, 8))  # eval forward: not analysed
    assert not got
    model.train()
    model(torch.randn(4, 3, 8, 8)).sum()
    assert [k for k, _ in got] == ['shifted', 'wrs']
    report = got[0][1]
    assert report is got[1][1] is plugin.report
    assert report['conv2.weight'].kind == 'channel'
    assert report['fc.weight'].kind == 'none'
    assert not model._forward_hooks and not model._forward_pre_hooks
    late = []  # a feature arriving after the analysis gets it at once
    plugin.on_analysis(WEIGHT_RESCALE, late.append)
    assert late == [report]
    with pytest.raises(ValueError, match='unknown feature'):
        plugin.on_analysis('ema', late.append)
    with pytest.raises(ValueError, match='has no place'):
        plugin.on_step(SHIFTED_REG, post=lambda: None)


def test_training_leaves_no_torch_hook_behind(tmp_path):
    cfg = toy.runner_cfg(
        tmp_path, 3, hook=dict(type='WeightRescaleHook', interval=1))
    cfg['custom_hooks'].append(dict(type='NormDynamicsHook', interval=1))
    runner = Runner.from_cfg(cfg)
    runner.train()
    optimizer = runner.optim_wrapper.optimizer
    assert 'step' not in vars(optimizer)
    assert not optimizer._optimizer_step_pre_hooks
    assert not optimizer._optimizer_step_post_hooks
    assert not runner.model._forward_hooks
    assert not runner.model._forward_pre_hooks


def _scheduler_warnings(caught) -> list:
    return [
        str(w.message) for w in caught if 'optimizer.step()' in str(w.message)
    ]


@pytest.mark.parametrize('scheduler_first', [True, False])
def test_step_wrapper_composes_with_torch_lr_scheduler(scheduler_first):
    """torch's LR scheduler wraps ``optimizer.step`` to count calls: the
    plugin wraps that wrapper (and keeps its mark) or is wrapped by it, the
    scheduler never warns, and ``remove`` leaves the scheduler's wrapper as
    the optimizer's ``step``."""
    model, optimizer, wrapper = _plugin()
    plugin = WRSPlugin.of(wrapper, model)
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        if scheduler_first:
            sched = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)
            counting = vars(optimizer)['step']
        plugin.on_step(WEIGHT_RESCALE, post=lambda: calls.append(1))
        if not scheduler_first:
            sched = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)
            counting = vars(optimizer)['step']
        for _ in range(3):
            model(torch.randn(4, 3, 8, 8)).sum().backward()
            optimizer.step()
            sched.step()
    assert not _scheduler_warnings(caught)
    assert calls == [1, 1, 1]
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.1 / 8)
    plugin.remove()
    # the scheduler's wrapper: the one the plugin found, put back, or the one
    # wrapped around the plugin's, which stays in it and calls nothing
    assert vars(optimizer)['step'] is counting
    optimizer.step()
    assert calls == [1, 1, 1]
    plugin.on_step(WEIGHT_RESCALE, post=lambda: calls.append(2))
    optimizer.step()  # installed again or still in the chain: called once
    assert calls == [1, 1, 1, 2]
    plugin.remove()


class TorchScheduler(Hook):
    """A torch LR scheduler on the torch optimizer, as Detectron2 builds
    them, made before the wrs_mm hooks attach (it wraps the optimizer's
    ``step`` to count calls); it also records mmengine's step counter (on
    the optim wrapper, where mmengine's param schedulers put it) after every
    iteration."""
    priority = 'HIGHEST'

    def before_train(self, runner):
        optimizer = runner.optim_wrapper.optimizer
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 1.)
        self.step, self.counts = vars(optimizer)['step'], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.scheduler.step()
        self.counts.append(runner.optim_wrapper._global_step)


def test_lr_schedulers_keep_counting_and_their_wrappers(tmp_path):
    """mmengine's param schedulers (a counter on the optim wrapper's
    ``step``) and a torch LR scheduler (a counter on the torch optimizer's
    ``step``) with the plugin installed: the counters keep counting, no
    scheduler warns, and after training (``remove``) the torch optimizer's
    ``step`` is the very counting wrapper it had before the plugin."""
    cfg = toy.runner_cfg(
        tmp_path,
        4,
        hook=dict(type='WeightRescaleHook', interval=1),
        param_scheduler=[
            dict(
                type='LinearLR',
                start_factor=0.5,
                begin=0,
                end=2,
                by_epoch=False),
            dict(
                type='MultiStepLR', milestones=[3], gamma=0.1, by_epoch=False)
        ])
    cfg['custom_hooks'].append(dict(type='NormDynamicsHook', interval=1))
    runner = Runner.from_cfg(cfg)
    probe = TorchScheduler()
    runner.register_hook(probe)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        runner.train()
    assert not _scheduler_warnings(caught)
    optimizer = runner.optim_wrapper.optimizer
    assert vars(optimizer)['step'] is probe.step
    assert probe.counts == [0, 1, 2, 3]
    assert probe.scheduler._step_count == 5  # its first step, then 4
    assert [s._global_step for s in runner.param_schedulers] == [4, 4]
    assert hasattr(runner.optim_wrapper.step, '_with_counter')
    hook = runner.hooks[[type(h).__name__
                         for h in runner.hooks].index('WeightRescaleHook')]
    assert hook.steps == 4
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.01)


def test_steps_are_seen_after_anything_was_compiled(tmp_path):
    """torch 2.1's dynamo removes the hooks of every torch optimizer class
    the first time anything is compiled in the process; the plugin wraps the
    optimizer's ``step`` itself, so WRS still rescales at every step."""
    torch.compile(lambda x: x * 2, backend='eager')(torch.ones(2))
    probe = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    seen = []
    probe.register_step_post_hook(lambda *_: seen.append(1))
    probe.step()
    runner = Runner.from_cfg(
        toy.runner_cfg(
            tmp_path, 3, hook=dict(type='WeightRescaleHook', interval=1)))
    runner.train()
    hook = runner.hooks[[type(h).__name__
                         for h in runner.hooks].index('WeightRescaleHook')]
    assert hook.steps == 3 and hook.num_rescales == 3, (hook.steps, seen)
    w = runner.model.net.conv1.weight.detach().flatten(1)
    assert torch.allclose(w.norm(dim=1), torch.ones(w.shape[0]), atol=1e-5)
