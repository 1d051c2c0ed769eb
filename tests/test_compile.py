"""torch.compile with every wrs_mm feature: mmengine's ``compile=True`` on a
real model from a shipped config (against eager training), dynamo's
counters against the same training without wrs_mm, and the core API under
``torch.compile(model)`` in a plain PyTorch loop. CPU, inductor."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch._dynamo.utils import counters

import wrs_mm  # noqa: F401
from wrs_mm.core import (RowEntry, ShiftedLpEntry, ShiftedLpRegularizer,
                         WeightRescaler, analyze_invariance)
from wrs_mm.core.compat import MIN_COMPILE, torch_version
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.engine.plugin import PLUGINS
from wrs_mm.testing import get_hook, repo_root
from wrs_mm.testing import small_scale as C
import toy
from conftest import NEEDS_MMCV, BNNet, needs_torch

#: mmengine's compile=True with a wrs_mm feature (torch 2.1 is refused)
MMENGINE_COMPILE = needs_torch(MIN_COMPILE, "wrs_mm under mmengine's compile")

WRS_CFG = repo_root() + '/configs/classification/' \
    'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py'


class Recorder(Hook):
    """Per iteration: the loss, and dynamo's graph-break and graph counts."""
    priority = 'LOWEST'

    def __init__(self):
        self.losses, self.breaks, self.graphs = [], [], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss']))
        self.breaks.append(sum(counters['graph_break'].values()))
        self.graphs.append(counters['stats']['unique_graphs'])


def _train(cfg) -> tuple:
    torch._dynamo.reset()
    counters.clear()
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    rec = Recorder()
    runner.register_hook(rec)
    runner.train()
    return runner, rec, dict(counters['graph_break'])


@pytest.fixture(scope='module')
def vgg_cfg(tmp_path_factory):
    """The shipped VGG16-BN WRS config at width 1/16 on 40 CIFAR images
    (4 iterations): WRS (tau 2) on the first three convs, the eps-shifted L2
    on the other ten, NormDynamicsHook on all."""
    work = tmp_path_factory.mktemp('compile')
    cfg = Config.fromfile(WRS_CFG)
    C.shrink_cls(
        cfg, work, images=(40, 20), epochs=1, batch_size=10, width=0.0625)
    first = r'^backbone\.features\.(0|3|7)\.weight$'
    cfg.custom_hooks = [
        dict(type='WeightRescaleHook', interval=2, include=first),
        dict(type='NormDynamicsHook', interval=1, include='^backbone')
    ]
    cfg.optim_wrapper.paramwise_cfg = dict(
        shifted_reg=dict(eps=0.3, mode='decoupled', exclude=[first, '^fc']))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg, work


@MMENGINE_COMPILE
@NEEDS_MMCV  # the shipped VGG16-BN config (mmcv.cnn)
@pytest.mark.heavy
def test_compiled_training_matches_eager_with_every_feature(vgg_cfg):
    cfg, work = vgg_cfg
    runs = {}
    for compiled in (False, True):
        c = copy.deepcopy(cfg)
        c.work_dir = str(work / f'compile_{compiled}')
        c.compile = compiled
        runs[compiled] = _train(c)
    (eager, e_rec, _), (comp, c_rec, breaks) = runs[False], runs[True]
    assert c_rec.losses == pytest.approx(e_rec.losses, rel=1e-4)
    a, b = eager.model.state_dict(), comp.model.state_dict()
    for k in a:
        assert torch.allclose(
            a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5), k
    hook = get_hook(comp, WeightRescaleHook)
    assert hook.num_rescales == 2 and len(hook.rescaler) == 3
    for name in ('0', '3', '7'):  # the last step was a rescale
        w = b[f'backbone.features.{name}.weight'].flatten(1)
        assert torch.allclose(w.norm(dim=1), torch.ones(w.shape[0]), atol=1e-5)
    plugin = PLUGINS[comp.optim_wrapper]
    assert len(plugin.report.invariant()) == 13
    shifted = [
        p for g in comp.optim_wrapper.optimizer.param_groups
        if g.get('wrs_mm_role') == 'shifted_lp' for p in g['params']
    ]
    assert len(shifted) == 10
    # the analysis ran outside the graph: the only graph break of ours
    ours = [k for k in breaks if 'wrs_mm' in k or 'TrainingPlugin' in k]
    assert len(ours) == 1 and '_analyse_outside_graph' in ours[0], ours
    norms = [(work / f'compile_{c}' / 'norm_dynamics.jsonl').read_text()
             for c in (False, True)]
    assert norms[0].count('\n') == norms[1].count('\n') == 4


@MMENGINE_COMPILE
@pytest.mark.parametrize('feature', ['wrs', 'shifted'])
def test_no_graph_break_or_recompilation_per_step(tmp_path, feature):
    """Dynamo's counters, iteration by iteration, against the same compiled
    training without wrs_mm: after the analysed first iteration (and the one
    recompilation when its hook is removed), wrs_mm adds no graph and no
    graph break per step."""
    hook = dict(type='WeightRescaleHook', interval=2)
    optim = dict(
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
        constructor='WRSOptimWrapperConstructor',
        paramwise_cfg=dict(shifted_reg=dict(eps=0.5)))
    plain = toy.runner_cfg(tmp_path / 'plain', 8, compile=True)
    ours = toy.runner_cfg(
        tmp_path / feature,
        8,
        hook=hook if feature == 'wrs' else None,
        optim=optim if feature == 'shifted' else None,
        compile=True)
    _, p_rec, _ = _train(plain)
    runner, o_rec, breaks = _train(ours)
    for counts in ('breaks', 'graphs'):
        base, mine = getattr(p_rec, counts), getattr(o_rec, counts)
        steps_base = [b - a for a, b in zip(base[2:], base[3:])]
        steps_mine = [b - a for a, b in zip(mine[2:], mine[3:])]
        assert all(m <= b
                   for m, b in zip(steps_mine, steps_base)), (counts, base,
                                                              mine)
    extra = [k for k in breaks if 'disable' in k]
    assert len(extra) == 1 and '_analyse_outside_graph' in extra[0]
    if feature == 'wrs':
        assert get_hook(runner, WeightRescaleHook).num_rescales == 4


def test_core_api_with_torch_compile_in_a_plain_loop():
    """The core in a plain PyTorch loop around ``torch.compile(model)``: the
    analysis on the eager module, then WRS and the shifted regularizer in
    the loop; the weights match an eager loop, and rescaling in place
    recompiles nothing."""

    def run(compiled: bool):
        torch.manual_seed(0)
        net = BNNet().train()
        model = torch.compile(net) if compiled else net
        x = torch.randn(8, 3, 8, 8)
        y = torch.randint(0, 5, (8, ))
        report = analyze_invariance(
            net, lambda: torch.nn.functional.cross_entropy(net(x), y))
        params = dict(net.named_parameters())
        first, second = report.invariant()  # conv1, conv2
        rescale = WeightRescaler(
            [RowEntry(first.name, params[first.name], first.rows)],
            target_norm='init')
        reg = ShiftedLpRegularizer(
            [ShiftedLpEntry(second.name, params[second.name], 1e-2)],
            eps=0.5,
            mode='coupled')
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        graphs = []
        for step in range(1, 9):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            reg.step_()
            opt.step()
            if step % 2 == 0:
                rescale()
            graphs.append(counters['stats']['unique_graphs'])
        return net.state_dict(), graphs

    torch._dynamo.reset()
    counters.clear()
    eager, _ = run(False)
    compiled, graphs = run(True)
    for k in eager:
        assert torch.allclose(
            eager[k].float(), compiled[k].float(), rtol=1e-4, atol=1e-5), k
    assert graphs[1:] == [graphs[1]] * 7, graphs  # compiled once, then reused


@pytest.mark.parametrize('feature', ['wrs', 'shifted', 'norm'])
def test_compile_on_an_older_torch_is_refused_before_the_first_step(
        tmp_path, feature):
    """On torch < 2.4 (the reference user environment's 2.1) every wrs_mm
    feature refuses ``compile=True`` before any optimizer step (the hooks
    before the run, the shifted regularizer at the first forward), naming
    the torch release it needs; on a newer torch the same run trains."""
    hooks = dict(
        wrs=dict(type='WeightRescaleHook', interval=1),
        norm=dict(type='NormDynamicsHook', interval=1))
    cfg = toy.runner_cfg(
        tmp_path,
        2,
        hook=hooks.get(feature),
        optim=dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
            constructor='WRSOptimWrapperConstructor',
            paramwise_cfg=dict(shifted_reg=dict(
                eps=0.5))) if feature == 'shifted' else None,
        compile=True)
    torch._dynamo.reset()
    runner = Runner.from_cfg(cfg)
    before = copy.deepcopy(runner.model.state_dict())
    if torch_version() >= MIN_COMPILE:
        runner.train()
        after = runner.model.state_dict()
        assert any(not torch.equal(after[k], v) for k, v in before.items())
        assert PLUGINS[runner.optim_wrapper].optimizer is \
            runner.optim_wrapper.optimizer
        return
    with pytest.raises(RuntimeError) as e:
        runner.train()
    for part in ("wrs_mm under torch.compile (mmengine's compile=True) "
                 'needs torch >= 2.4', f'this is torch {torch.__version__}'):
        assert part in str(e.value), str(e.value)
    for k, v in runner.model.state_dict().items():  # no step was taken
        assert torch.equal(v, before[k]), k
