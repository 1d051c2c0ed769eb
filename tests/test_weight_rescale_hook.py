"""WeightRescaleHook and the decay split through the real mmengine Runner."""
import json
import os
from unittest import mock

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import wrs_mm  # noqa: F401
from wrs_mm.core.param_groups import ROLE, ROLE_WRS
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.testing import get_hook, groups_by_name
import toy  # noqa: F401  (registers the toy model and dataset)
from conftest import CPU_GRAD_SCALER, NEEDS_MMCV, NEEDS_MMDET

CONVS = ('net.conv1.weight', 'net.conv2.weight')


class NormRecorder(Hook):
    """Records per-channel conv norms after every iteration (after WRS)."""
    priority = 'LOWEST'

    def __init__(self):
        self.norms, self.rescales = [], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        params = dict(runner.model.named_parameters())
        self.norms.append(
            torch.cat(
                [params[n].detach().flatten(1).norm(dim=1) for n in CONVS]))
        wrs = get_hook(runner, WeightRescaleHook)
        self.rescales.append(wrs.num_rescales)


def _run(tmp_path, hook_cfg, max_iters=10, **kw):
    cfg = toy.runner_cfg(tmp_path, max_iters, hook=hook_cfg, **kw)
    runner = Runner.from_cfg(cfg)
    rec = NormRecorder()
    runner.register_hook(rec)
    runner.train()
    hook = get_hook(runner, WeightRescaleHook)
    return runner, hook, rec


def _unit_iters(rec):
    """Iterations after which a rescale happened; checks the norms are 1."""
    counts = [0] + rec.rescales
    iters = [i for i in range(len(rec.rescales)) if counts[i + 1] > counts[i]]
    for i in iters:
        assert torch.allclose(
            rec.norms[i], torch.ones_like(rec.norms[i]), atol=1e-5)
    for i in range(len(rec.norms)):
        if i not in iters and (i == 0 or counts[i] == 0):
            # never rescaled yet: norms are not all 1
            assert not torch.allclose(
                rec.norms[i], torch.ones_like(rec.norms[i]), atol=1e-5)
    return iters


def test_rescales_every_tau_steps_and_splits_decay(tmp_path):
    runner, hook, rec = _run(tmp_path,
                             dict(type='WeightRescaleHook', interval=3))
    assert hook.steps == 10 and hook.num_rescales == 3
    assert _unit_iters(rec) == [2, 5, 8]
    groups = groups_by_name(runner.optim_wrapper, runner.model)
    for n in CONVS:
        assert groups[n]['weight_decay'] == 0 and groups[n][ROLE] == ROLE_WRS
    for n in ('net.bn1.weight', 'net.bn2.weight', 'net.fc.weight',
              'net.conv1.bias'):
        assert groups[n]['weight_decay'] == 5e-4
    table = json.load(
        open(os.path.join(runner.work_dir, 'wrs_invariance.json')))
    rescaled = {r['name'] for r in table if r['rescaled']}
    assert rescaled == set(CONVS)
    refused = [r for r in table if not r['rescaled']]
    assert [r['name'] for r in refused] == ['net.fc.weight']
    assert 'not only by a normalisation' in refused[0]['reason']
    log = next(
        f for d in os.scandir(runner.work_dir) if d.is_dir()
        for f in os.scandir(d.path) if f.name.endswith('.log'))
    text = open(log.path).read()
    assert 'wrs_norm_mean: ' in text and 'wrs_zero_rows: 0' in text


def test_paramwise_cfg_still_applies(tmp_path):
    optim = dict(
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-3),
        constructor='WRSOptimWrapperConstructor',
        paramwise_cfg=dict(
            norm_decay_mult=0.5, custom_keys={'fc': dict(decay_mult=2.)}))
    runner, hook, _ = _run(
        tmp_path,
        dict(type='WeightRescaleHook'),
        max_iters=2,
        optim_wrapper=optim)
    groups = {
        n: g['weight_decay']
        for n, g in groups_by_name(runner.optim_wrapper, runner.model).items()
    }
    assert groups['net.bn1.weight'] == pytest.approx(5e-4)
    assert groups['net.fc.weight'] == pytest.approx(2e-3)
    assert groups['net.conv1.weight'] == 0 and groups['net.conv2.weight'] == 0
    assert groups['net.conv1.bias'] == pytest.approx(1e-3)


def test_accumulation_counts_updates_not_iterations(tmp_path):
    optim = dict(
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
        constructor='WRSOptimWrapperConstructor',
        accumulative_counts=2)
    _, hook, rec = _run(
        tmp_path,
        dict(type='WeightRescaleHook', interval=2),
        max_iters=8,
        optim_wrapper=optim)
    assert hook.steps == 4 and hook.num_rescales == 2
    assert _unit_iters(rec) == [3, 7]


@CPU_GRAD_SCALER
def test_skipped_amp_step_does_not_count(tmp_path):
    """AmpOptimWrapper with torch's GradScaler on CPU; the loss of the 3rd
    iteration is inf, so GradScaler skips that optimizer step."""
    from mmengine.optim import AmpOptimWrapper
    with mock.patch(
            'mmengine.optim.optimizer.amp_optimizer_wrapper.'
            'is_cuda_available',
            return_value=True):
        cfg = toy.runner_cfg(
            tmp_path, 6, hook=dict(type='WeightRescaleHook', interval=2))
        cfg['model']['inf_at_call'] = 3
        cfg['optim_wrapper']['type'] = 'AmpOptimWrapper'
        cfg['optim_wrapper']['dtype'] = 'bfloat16'
        runner = Runner.from_cfg(cfg)
        runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu')
    rec = NormRecorder()
    runner.register_hook(rec)
    runner.train()
    hook = get_hook(runner, WeightRescaleHook)
    assert hook.steps == 5  # 6 iterations, one skipped step
    # steps 1, 2 at iters 0, 1; iter 2 skipped; steps 3, 4, 5 at iters 3, 4, 5
    assert _unit_iters(rec) == [1, 4]


def test_window(tmp_path):
    _, hook, rec = _run(
        tmp_path, dict(type='WeightRescaleHook', interval=1, begin=4, end=8))
    assert hook.num_rescales == 4
    assert _unit_iters(rec) == [4, 5, 6, 7]


def test_resume_is_bitwise_exact(tmp_path):
    full, resumed = toy.train_and_resume(
        tmp_path,
        dict(type='WeightRescaleHook', interval=2),
        default_hooks=dict(
            toy.CHECKPOINT_AT_3, logger=dict(type='LoggerHook', interval=1)))
    h = get_hook(resumed, WeightRescaleHook)
    assert h.steps == 6 and h.num_rescales == 3
    toy.assert_same_state(full.model, resumed.model)


@pytest.mark.parametrize('start, resume', [(None, 1e-12), (1e-12, None)])
def test_resume_keeps_the_rescaled_weights_of_the_checkpoint(
        tmp_path, start, resume):
    """The eps check is data-dependent (it crossed max_invariance_error on the
    trained weights of a real resumed YOLOv3): on resume the checkpoint's set
    of rescaled weights is kept, whatever the check says now, and training is
    bitwise the uninterrupted run. Here a limit of 1e-12 refuses every weight,
    None none."""
    hook = dict(type='WeightRescaleHook', interval=2)
    full, resumed = toy.train_and_resume(
        tmp_path,
        dict(hook, max_invariance_error=start),
        resumed_hook=dict(hook, max_invariance_error=resume))
    a, b = (get_hook(r, WeightRescaleHook) for r in (full, resumed))
    assert a._selection() == b._selection()
    assert a._selection() == ({} if start else dict(zip(CONVS, (8, 16))))
    toy.assert_same_state(full.model, resumed.model)
    log = open(next((tmp_path / 'resumed').glob('*/*.log'))).read()
    assert f'resumed: rescaling the {len(a._selection())} weights' in log


@pytest.mark.parametrize('saved', [('targets', ), ()])
def test_resume_of_a_checkpoint_without_the_selection(tmp_path, saved):
    """Checkpoints written before the rescaled weights were saved (with
    per-weight targets, or from before those too) select the weights again
    at resume, as they did then: both convs, bitwise the uninterrupted
    run."""
    hook = dict(type='WeightRescaleHook', interval=2)
    full, _ = toy.train_and_resume(tmp_path, hook)
    ckpt = torch.load(tmp_path / 'full' / 'iter_3.pth', weights_only=False)
    state = ckpt['wrs_mm']['WeightRescaleHook']
    for key in set(state) - {'steps', 'num_rescales', 'target_norm', *saved}:
        del state[key]
    torch.save(ckpt, tmp_path / 'old.pth')
    old = toy.resumed_runner(tmp_path, hook, 'old', tmp_path / 'old.pth')
    old.train()
    assert get_hook(old, WeightRescaleHook)._selection() == \
        get_hook(full, WeightRescaleHook)._selection()
    assert len(get_hook(old, WeightRescaleHook)._selection()) == 2
    toy.assert_same_state(full.model, old.model)


def test_resume_with_another_selection_is_refused(tmp_path):
    hook = dict(type='WeightRescaleHook', interval=2)
    toy.train_and_resume(tmp_path, hook)
    other = toy.resumed_runner(tmp_path, dict(hook, exclude='conv2'), 'other')
    with pytest.raises(
            ValueError,
            match=r'rescaled 2 weights, this config and model 1; '
            r'changed: net.conv2.weight \(16 rows -> 0\)'):
        other.train()
    assert get_hook(other, WeightRescaleHook).steps == 3


@pytest.mark.parametrize('target', [0.5, 'init'])
def test_target_norm_sets_every_rescaled_row_and_is_logged(tmp_path, target):
    """Every rescale sets each conv row to the target: a number, or the RMS of
    the weight's row norms before the first optimizer step ('init'); the
    target is in the start-up table and in wrs_invariance.json."""
    torch.manual_seed(0)
    cfg = toy.runner_cfg(
        tmp_path,
        4,
        hook=dict(type='WeightRescaleHook', interval=2, target_norm=target))
    runner = Runner.from_cfg(cfg)
    params = dict(runner.model.named_parameters())
    init = {
        n:
        float(params[n].detach().square().sum().div(params[n].shape[0]).sqrt())
        for n in CONVS
    }
    rec = NormRecorder()
    runner.register_hook(rec)
    runner.train()
    hook = get_hook(runner, WeightRescaleHook)
    want = init if target == 'init' else dict.fromkeys(CONVS, target)
    assert hook.rescaler.targets == pytest.approx(want, rel=1e-6)
    assert hook.num_rescales == 2
    for i in (1, 3):  # after the rescales at steps 2 and 4
        norms = rec.norms[i].split([params[n].shape[0] for n in CONVS])
        for n, got in zip(CONVS, norms):
            assert torch.allclose(
                got, torch.full_like(got, want[n]), rtol=1e-5)
    assert not torch.allclose(
        rec.norms[0].split(8)[0], torch.full((8, ), want[CONVS[0]]), rtol=1e-3)
    with open(tmp_path / 'wrs_invariance.json') as f:
        table = {r['name']: r for r in json.load(f)}
    for n in CONVS:
        assert table[n]['target_norm'] == pytest.approx(want[n])
    assert table['net.fc.weight']['target_norm'] is None
    log = open(next(tmp_path.glob('*/*.log'))).read()
    goal = ("each weight's initial RMS row norm"
            if target == 'init' else 'norm 0.5')
    assert f'rescaling 2 weights to {goal}' in log
    assert f"{want[CONVS[0]]:.4g}" in log


def test_resume_with_init_target_is_bitwise_exact(tmp_path):
    """'init' targets come from the checkpoint, not from the resumed weights;
    resuming with another target_norm is refused before training."""
    hook = dict(type='WeightRescaleHook', interval=2, target_norm='init')
    full, resumed = toy.train_and_resume(tmp_path, hook)
    assert get_hook(resumed, WeightRescaleHook).rescaler.targets == \
        get_hook(full, WeightRescaleHook).rescaler.targets
    toy.assert_same_state(full.model, resumed.model)
    other = toy.resumed_runner(tmp_path, dict(hook, target_norm=1.0), 'other')
    with pytest.raises(
            ValueError,
            match="target_norm is 1.0 but the "
            "checkpoint was trained with 'init'"):
        other.train()


def test_bad_arguments():
    for bad in (0, -1., float('nan'), 'unit', {'net.conv1.weight': 1.}):
        with pytest.raises(
                ValueError, match='WeightRescaleHook.target_norm must be'):
            WeightRescaleHook(target_norm=bad)
    with pytest.raises(ValueError, match='interval'):
        WeightRescaleHook(interval=0)
    with pytest.raises(ValueError, match='end'):
        WeightRescaleHook(begin=5, end=3)
    with pytest.raises(ValueError, match='backend must be one of'):
        WeightRescaleHook(backend='gpu')
    with pytest.raises(ValueError, match='check_finite must be one of'):
        WeightRescaleHook(check_finite=True)
    with pytest.raises(ValueError, match='granularity'):
        WeightRescaleHook(granularity='row')
    with pytest.raises(ValueError, match='invalid regex'):
        WeightRescaleHook(include='conv[')
    with pytest.raises(TypeError, match='rescale_optimizer_state'):
        WeightRescaleHook(rescale_optimizer_state='yes')
    with pytest.raises(TypeError, match='self_check must be True or False'):
        WeightRescaleHook(self_check='off')
    with pytest.raises(ValueError, match='max_invariance_error'):
        WeightRescaleHook(max_invariance_error=0)


@pytest.mark.parametrize('carry', [False, True])
def test_rescale_optimizer_state_option(tmp_path, carry):
    """With the option, every rescale scales the conv rows' momentum by the
    rows' norms (the math is tested in test_core_rescale); without it the
    buffers are left alone."""
    from wrs_mm.core import rescale as mod
    seen = []
    real = mod.rescale_optimizer_state

    def spy(optimizer, stats):
        before = {
            p: st['momentum_buffer'].clone()
            for p, st in optimizer.state.items()
        }
        real(optimizer, stats)
        seen.append((optimizer, stats, before))

    hook = dict(
        type='WeightRescaleHook', interval=2, rescale_optimizer_state=carry)
    with mock.patch.object(mod, 'rescale_optimizer_state', spy):
        runner, hook, _ = _run(tmp_path, hook, max_iters=4)
    assert len(seen) == (2 if carry else 0)
    if not carry:
        return
    optimizer, stats, before = seen[-1]
    assert optimizer is runner.optim_wrapper.optimizer
    conv1 = runner.model.net.conv1.weight
    (entries, scales), = list(stats.row_scales())
    scale = dict(zip([e.name for e in entries], scales))['net.conv1.weight']
    assert torch.allclose(optimizer.state[conv1]['momentum_buffer'],
                          before[conv1] * scale)
    fc = runner.model.net.fc.weight  # not rescaled: untouched
    assert torch.equal(optimizer.state[fc]['momentum_buffer'], before[fc])


def test_pattern_matching_nothing_fails_before_training(tmp_path):
    runner = Runner.from_cfg(
        toy.runner_cfg(
            tmp_path,
            2,
            hook=dict(type='WeightRescaleHook', include='backbone')))
    with pytest.raises(ValueError, match="include: pattern 'backbone'"):
        runner.train()
    assert runner.iter == 0


def test_included_non_invariant_weight_is_refused(tmp_path):
    hook = dict(type='WeightRescaleHook', include=['conv', 'fc'])
    runner = Runner.from_cfg(toy.runner_cfg(tmp_path, 2, hook=hook))
    w0 = runner.model.net.fc.weight.detach().clone()
    with pytest.raises(ValueError, match='net.fc.weight'):
        runner.train()
    assert torch.equal(runner.model.net.fc.weight, w0)  # nothing applied
    hook.update(allow_non_invariant=True, interval=1)
    forced = Runner.from_cfg(
        toy.runner_cfg(tmp_path / 'f', 2, hook=hook, experiment_name='forced'))
    forced.train()
    n = forced.model.net.fc.weight.detach().norm(dim=1)
    assert torch.allclose(n, torch.ones_like(n), atol=1e-5)


@NEEDS_MMCV
def test_bias_dominated_head_refused_and_conv_ws_rescaled(tmp_path):
    """A plain conv whose output is dominated by its bias, on tiny inputs,
    stays as it is (refused, decay kept); the ConvWS2d before it is
    rescaled; naming the head in ``include`` is an error."""
    cfg = toy.runner_cfg(
        tmp_path, 2, hook=dict(type='WeightRescaleHook', interval=1))
    cfg['model'] = dict(type='ToyWSHeadClassifier')
    runner = Runner.from_cfg(cfg)
    head0 = runner.model.head.weight.detach().clone()
    runner.train()
    table = {
        r['name']: r
        for r in json.load(
            open(os.path.join(runner.work_dir, 'wrs_invariance.json')))
    }
    assert table['ws.weight']['rescaled']
    assert table['ws.weight']['kind'] == 'ws'
    assert not table['head.weight']['rescaled']
    assert table['head.weight']['kind'] == 'none'
    groups = groups_by_name(runner.optim_wrapper, runner.model)
    assert groups['head.weight']['weight_decay'] == 5e-4
    ws = runner.model.ws.weight.detach().flatten(1).norm(dim=1)
    assert torch.allclose(ws, torch.ones_like(ws), atol=1e-5)
    head = runner.model.head.weight.detach().flatten(1).norm(dim=1)
    assert not torch.allclose(head, torch.ones_like(head), atol=1e-2)
    assert not torch.equal(runner.model.head.weight, head0)  # it trained
    cfg = toy.runner_cfg(
        tmp_path / 'inc',
        2,
        hook=dict(type='WeightRescaleHook', include='head'),
        experiment_name='ws_head_include')
    cfg['model'] = dict(type='ToyWSHeadClassifier')
    with pytest.raises(ValueError, match='head.weight'):
        Runner.from_cfg(cfg).train()


def test_no_invariant_weight_warns_and_does_nothing(tmp_path):
    cfg = toy.runner_cfg(
        tmp_path, 3, hook=dict(type='WeightRescaleHook', interval=1))
    runner = Runner.from_cfg(cfg)
    net = runner.model.net
    train = runner.model.train

    def frozen_bn_train(mode=True):  # what mmdet's norm_eval=True does
        train(mode)
        net.bn1.eval()
        net.bn2.eval()
        return runner.model

    runner.model.train = frozen_bn_train
    runner.train()
    hook = get_hook(runner, WeightRescaleHook)
    assert hook.rescaler is None and hook.steps == 3
    groups = runner.optim_wrapper.optimizer.param_groups
    assert all(g['weight_decay'] == 5e-4 for g in groups if g['params'])
    log = open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'WARNING - WeightRescaleHook: the model has no scale-invariant' \
        in log
    assert "in eval mode (frozen running statistics" in log


@NEEDS_MMDET
def test_registered_for_mmdet_and_mmseg_scopes():
    from mmdet.registry import HOOKS as DET_HOOKS
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as DET_CONS
    from mmengine.registry import DefaultScope
    from mmseg.registry import HOOKS as SEG_HOOKS
    for scope, hooks in (('mmdet', DET_HOOKS), ('mmseg', SEG_HOOKS)):
        with DefaultScope.overwrite_default_scope(scope):
            hook = hooks.build(dict(type='WeightRescaleHook', interval=3))
            assert isinstance(hook, WeightRescaleHook) and hook.interval == 3
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert DET_CONS.get('WRSOptimWrapperConstructor') is not None


def test_single_group_optimizer_is_rejected(tmp_path):
    optim = dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4))
    runner = Runner.from_cfg(
        toy.runner_cfg(
            tmp_path,
            2,
            hook=dict(type='WeightRescaleHook'),
            optim_wrapper=optim))
    with pytest.raises(ValueError, match='WRSOptimWrapperConstructor'):
        runner.train()


def test_ddp_two_processes_keep_parameters_identical(tmp_path):
    toy.torchrun('ddp_train.py', [tmp_path], 2)
    a, b = toy.load_identical_ranks(tmp_path)
    assert a['rescales'] == b['rescales'] == 3
    assert any(not torch.equal(a['buffers'][k], b['buffers'][k])
               for k in a['buffers'] if 'running_mean' in k), \
        'ranks saw different data (BN statistics differ)'


def test_exclude_keeps_weight_and_its_decay(tmp_path):
    runner, hook, _ = _run(
        tmp_path,
        dict(type='WeightRescaleHook', interval=1, exclude=r'conv2\.'),
        max_iters=2)
    assert [e.name for e in hook.rescaler.pack.entries] == ['net.conv1.weight']
    groups = groups_by_name(runner.optim_wrapper, runner.model)
    assert groups['net.conv2.weight']['weight_decay'] == 5e-4
    table = {
        r['name']: r
        for r in json.load(
            open(os.path.join(runner.work_dir, 'wrs_invariance.json')))
    }
    assert not table['net.conv2.weight']['rescaled']
    assert table['net.conv2.weight']['reason'] == \
        'not selected by include / exclude'


def test_window_in_epochs(tmp_path):
    """begin/end in epochs: 32 images / batch 4 = 8 steps per epoch; only
    epoch 1 (the second) rescales."""
    cfg = toy.runner_cfg(
        tmp_path,
        hook=dict(
            type='WeightRescaleHook',
            interval=1,
            begin=1,
            end=2,
            by_epoch=True),
        train_cfg=dict(by_epoch=True, max_epochs=3))
    cfg['train_dataloader']['sampler'] = dict(
        type='DefaultSampler', shuffle=True)
    runner = Runner.from_cfg(cfg)
    rec = NormRecorder()
    runner.register_hook(rec)
    runner.train()
    assert _unit_iters(rec) == list(range(8, 16))


class ScalarRecorder(Hook):
    """What the message hub holds for the WRS stats after each iteration's
    hooks (the LoggerHook has written its line by then)."""
    priority = 'LOWEST'

    def __init__(self):
        self.seen = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        buf = runner.message_hub.log_scalars.get('train/wrs_norm_mean')
        self.seen.append(None if buf is None else list(buf.data[0]))


def test_stats_read_only_on_log_lines_and_only_when_measured(tmp_path):
    cfg = toy.runner_cfg(
        tmp_path, 12, hook=dict(type='WeightRescaleHook', interval=5))
    cfg['default_hooks']['logger']['interval'] = 2
    runner = Runner.from_cfg(cfg)
    rec = ScalarRecorder()
    runner.register_hook(rec)
    with mock.patch(
            'wrs_mm.core.rescale.RescaleStats._read',
            autospec=True,
            side_effect=wrs_mm.core.rescale.RescaleStats._read) as rd:
        runner.train()
    # rescales after iterations 5 and 10 (indices 4, 9); log lines after
    # every 2nd: the stats appear on the first line after each rescale only
    logged = range(1, 12, 2)
    present = [i for i in logged if rec.seen[i] is not None]
    assert present == [5, 9], rec.seen
    for i in present:
        assert len(rec.seen[i]) == 1 and rec.seen[i][0] > 0  # no window
    assert rd.call_count >= 1  # read lazily, on those lines
    assert len({id(c.args[0]) for c in rd.call_args_list}) == 2


def test_weight_whose_eps_breaks_invariance_is_refused_and_error_logged(
        tmp_path):
    """bn2.eps = 10 makes eps dominate conv2's batch variance: refused (its
    decay kept), reported with the measured eps error; conv1 is rescaled and
    the output change of each rescale through eps is logged."""
    cfg = toy.runner_cfg(
        tmp_path, 4, hook=dict(type='WeightRescaleHook', interval=2))
    runner = Runner.from_cfg(cfg)
    runner.model.net.bn2.eps = 10.
    runner.train()
    table = {
        r['name']: r
        for r in json.load(
            open(os.path.join(runner.work_dir, 'wrs_invariance.json')))
    }
    conv2 = table['net.conv2.weight']
    assert not conv2['rescaled'] and conv2['eps_error'] > 1e-2
    assert 'eps breaks the invariance' in conv2['reason']
    assert table['net.conv1.weight']['rescaled']
    assert table['net.conv1.weight']['eps_error'] < 1e-2
    groups = groups_by_name(runner.optim_wrapper, runner.model)
    assert groups['net.conv2.weight']['weight_decay'] == 5e-4
    log = open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    values = [
        float(line.split('wrs_invariance_error: ')[1].split()[0])
        for line in log.splitlines() if 'wrs_invariance_error: ' in line
    ]
    assert len(values) == 2 and all(0 <= v < 1e-2 for v in values)
    # with no limit the same weight is rescaled
    cfg = toy.runner_cfg(
        tmp_path / 'nolimit',
        2,
        hook=dict(
            type='WeightRescaleHook', interval=1, max_invariance_error=None),
        experiment_name='eps_nolimit')
    runner = Runner.from_cfg(cfg)
    runner.model.net.bn2.eps = 10.
    runner.train()
    assert len(get_hook(runner, WeightRescaleHook).rescaler) == 2


class _LogLinePredictions(Hook):
    """Records ``logger_writes_line`` for every training iteration."""

    def __init__(self):
        self.predicted = set()

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        from wrs_mm.engine.weight_rescale_hook import logger_writes_line
        if logger_writes_line(runner, batch_idx):
            self.predicted.add((runner.epoch + 1, batch_idx + 1))


@pytest.mark.parametrize('ignore_last', [False, True])
def test_log_line_prediction_matches_logger_hook(tmp_path, ignore_last):
    """The iterations after which the hook expects ``LoggerHook`` to write a
    training line (where its scalars are read) are exactly the lines
    ``LoggerHook`` writes: 2 epochs of 8 iterations, interval 3, with and
    without ``ignore_last``."""
    import re
    cfg = toy.runner_cfg(
        tmp_path, 16, hook=dict(type='WeightRescaleHook', interval=2))
    cfg['train_cfg'] = dict(by_epoch=True, max_epochs=2)
    cfg['default_hooks']['logger'] = dict(
        type='LoggerHook', interval=3, ignore_last=ignore_last)
    runner = Runner.from_cfg(cfg)
    rec = _LogLinePredictions()
    runner.register_hook(rec, 'LOWEST')
    runner.train()
    log = open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    written = {
        (int(e), int(i))
        for e, i in re.findall(r'Epoch\(train\) \[(\d+)\]\[\s*(\d+)/8\]', log)
    }
    expected = {(e, i) for e in (1, 2) for i in (3, 6)}
    expected |= set() if ignore_last else {(1, 8), (2, 8)}
    assert written == expected  # LoggerHook's lines, as configured
    assert rec.predicted == written
