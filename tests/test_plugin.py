"""WRSPlugin: one per optimizer wrapper, callbacks in the named order, the
analysis handed out in SETUP_ORDER, every hook removed at the end, and the
steps seen after dynamo has stripped torch's optimizer hooks (torch 2.1)."""
import types

import pytest
import torch
from mmengine.runner import Runner

from wrs_mm.core.plugin import (NORM_DYNAMICS, POST_STEP_ORDER, PRE_STEP_ORDER,
                                SHIFTED_REG, WEIGHT_RESCALE)
from wrs_mm.engine.plugin import WRSPlugin
import toy
from conftest import BNNet


def _plugin():
    torch.manual_seed(0)
    model = BNNet().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapper = types.SimpleNamespace(optimizer=optimizer)
    return model, optimizer, wrapper


def test_one_plugin_per_wrapper_and_callbacks_in_named_order():
    model, optimizer, wrapper = _plugin()
    plugin = WRSPlugin.of(wrapper, model)
    assert WRSPlugin.of(wrapper, model) is plugin
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
