"""NormDynamicsHook: its records against values computed directly."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import wrs_mm  # noqa: F401
from wrs_mm.engine import read_norm_dynamics
import toy


class GradCapture(Hook):
    """Keeps weights and grads right before every optimizer step."""
    priority = 'LOWEST'

    def __init__(self):
        self.seen = {}

    def before_train(self, runner):
        opt = runner.optim_wrapper.optimizer

        def pre(optimizer, args, kwargs):
            self.seen[runner.iter + 1] = {
                n: (p.detach().cpu().clone(), p.grad.cpu().clone())
                for n, p in runner.model.named_parameters()
                if p.grad is not None
            }

        opt.register_step_pre_hook(pre)


def test_records_match_direct_computation(tmp_path):
    optim = dict(optimizer=dict(type='SGD', lr=0.5))  # plain SGD, no decay
    cfg = toy.runner_cfg(
        tmp_path,
        6,
        optim_wrapper=optim,
        hook=dict(type='NormDynamicsHook', interval=2, all_channels=True))
    runner = Runner.from_cfg(cfg)
    for m in runner.model.modules():  # BN eps blurs Thm 3.1 at 1e-5
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-12
    cap = GradCapture()
    runner.register_hook(cap)
    runner.train()
    records = read_norm_dynamics(os.path.join(tmp_path, 'norm_dynamics.jsonl'))
    assert [r['iter'] for r in records] == [1, 3, 5]
    for r in records:
        for name in ('net.conv1.weight', 'net.conv2.weight', 'net.fc.weight'):
            rec = r['layers'][name]
            w, g = cap.seen[r['iter']][name]
            w, g = w.flatten(1), g.flatten(1)
            norms = w.norm(dim=1)
            assert torch.allclose(torch.tensor(rec['norms']), norms, rtol=1e-5)
            assert abs(rec['norm_mean'] - norms.mean().item()) < 1e-5
            assert abs(rec['eff_lr'] - (0.5 / norms**2).mean().item()) < \
                1e-4 * rec['eff_lr']
            cos = torch.nn.functional.cosine_similarity(w, g, dim=1).abs()
            assert abs(rec['cos_abs_mean'] - cos.mean().item()) < 1e-5
            if name == 'net.fc.weight':  # not scale-invariant
                assert rec['cos_abs_mean'] > 1e-2
            else:  # Thm 3.1 and Cor 3.3
                assert rec['cos_abs_max'] < 1e-4
                assert abs(rec['dnorm2'] - rec['pred_dnorm2']) < \
                    1e-3 * rec['pred_dnorm2']
    # the log line carries the layer average of the last record
    last = records[-1]['layers']
    hub = runner.message_hub
    assert hub.get_scalar('train/cos_abs_mean').current() == pytest.approx(
        sum(v['cos_abs_mean'] for v in last.values()) / len(last), rel=1e-6)


def test_plot_tool_makes_the_png(tmp_path):
    for name, hook in (('wd', None),
                       ('wrs', dict(type='WeightRescaleHook', interval=2))):
        cfg = toy.runner_cfg(
            tmp_path / name, 6, hook=hook, experiment_name=f'plot_{name}')
        cfg['custom_hooks'].append(dict(type='NormDynamicsHook', interval=1))
        Runner.from_cfg(cfg).train()
    out = tmp_path / 'dyn.png'
    tool = os.path.join(
        os.path.dirname(__file__), '..', 'tools', 'analysis',
        'plot_norm_dynamics.py')
    res = subprocess.run([
        sys.executable, tool,
        str(tmp_path / 'wd'),
        str(tmp_path / 'wrs'), '--labels', 'WD', 'WRS', '--out',
        str(out)
    ],
                         check=True,
                         capture_output=True,
                         text=True)
    assert '3 layers x 2 runs' in res.stdout
    assert out.stat().st_size > 10000
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    wrs = read_norm_dynamics(str(tmp_path / 'wrs' / 'norm_dynamics.jsonl'))
    # iteration 3 follows the rescale after step 2: unit norms recorded
    rec = next(r for r in wrs if r['iter'] == 3)['layers']['net.conv1.weight']
    assert abs(rec['norm_mean'] - 1) < 1e-5
    # interval=1: one record per iteration, in order
    assert [r['iter'] for r in wrs] == [1, 2, 3, 4, 5, 6]
