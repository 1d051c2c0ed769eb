"""``CheckpointOnSignalHook``: a signal in the middle of an iteration stops
the run at that iteration's end with a resumable ``iter_<n>.pth`` (WRS's
state in it, ``last_checkpoint`` pointing at it, exit status 75), and the run
resumed from it ends bitwise equal to an uninterrupted one, in the middle of
an epoch of ``EpochBasedTrainLoop`` as in ``IterBasedTrainLoop``, with a
shuffled sampler and random draws in every step; under DDP every rank stops
at the same iteration when one rank alone is signalled. The requeue of a
Slurm job: tests/test_slurm.py."""
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import rank_state_hook  # noqa: F401 (SignalAtIterHook)
import torch
from mmengine.config import Config
from mmengine.registry import MODELS
from mmengine.runner import Runner

from wrs_mm.engine import CheckpointOnSignalHook, TrainingPreempted
from wrs_mm.testing import repo_root
from wrs_mm.testing import small_scale as C
import toy
from conftest import NEEDS_MMCV

ROOT = repo_root()
HERE = osp.dirname(osp.abspath(__file__))
WRS_CFG = osp.join(ROOT, 'configs', 'classification',
                   'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py')


@MODELS.register_module(force=True)
class NoisyToyClassifier(toy.ToyBNClassifier):
    """The toy classifier with noise on its training inputs: every step
    draws from torch's generator, so a resume that does not restore it
    diverges."""

    def forward(self, inputs, labels, mode='tensor', **kwargs):
        if mode == 'loss':
            inputs = inputs + 0.5 * torch.randn_like(inputs)
        return super().forward(inputs, labels, mode, **kwargs)


def _cfg(work_dir, by_epoch: bool, signal_at=None, **kw) -> dict:
    """16 iterations (2 epochs of 8 with ``by_epoch``), WRS every 3 steps,
    a stop signal in iteration ``signal_at``."""
    hooks = [dict(type='WeightRescaleHook', interval=3)]
    if signal_at is not None:
        hooks += [
            dict(type='CheckpointOnSignalHook'),
            dict(type='SignalAtIterHook', at=signal_at)
        ]
    cfg = toy.runner_cfg(
        work_dir, 16, model=dict(type='NoisyToyClassifier'), **kw)
    cfg['custom_hooks'] = hooks
    if by_epoch:
        cfg['train_cfg'] = dict(by_epoch=True, max_epochs=2)
    return cfg


@pytest.mark.parametrize(
    'by_epoch,at', [(True, 5), (True, 7), (False, 5)],
    ids=['mid-epoch', 'epoch-end', 'iter-based'])
def test_stop_at_iteration_end_and_resume_bitwise(tmp_path, by_epoch, at):
    """Signalled in iteration ``at`` (0-based), the run saves
    ``iter_<at+1>.pth`` and raises ``TrainingPreempted`` (status 75) with the
    previous signal handlers back; resumed (the hook in the config), it ends
    bitwise equal to the uninterrupted run, WRS's state included."""
    full = Runner.from_cfg(_cfg(tmp_path / 'full', by_epoch))
    full.train()
    before = signal.getsignal(signal.SIGUSR1)
    stopped = Runner.from_cfg(_cfg(tmp_path / 'run', by_epoch, at))
    with pytest.raises(TrainingPreempted) as stop:
        stopped.train()
    assert stop.value.code == 75
    assert signal.getsignal(signal.SIGUSR1) is before
    ckpt = tmp_path / 'run' / f'iter_{at + 1}.pth'
    assert (tmp_path / 'run' / 'last_checkpoint').read_text() == str(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert saved['meta']['iter'] == at + 1 and 'wrs_mm' in saved
    assert len(saved['signal_stop']['rng']) == 1  # one rank
    resumed = Runner.from_cfg(
        dict(
            _cfg(tmp_path / 'run', by_epoch, resume=True),
            custom_hooks=[
                dict(type='WeightRescaleHook', interval=3),
                dict(type='CheckpointOnSignalHook')
            ]))
    resumed.train()
    assert resumed.iter == full.iter == 16
    toy.assert_same_state(full.model, resumed.model)
    wrs = [
        next(h for h in r.hooks if type(h).__name__ == 'WeightRescaleHook')
        for r in (full, resumed)
    ]
    assert wrs[0].state_dict() == wrs[1].state_dict()


@pytest.mark.parametrize('sig,requeued', [('SIGUSR1', True),
                                          ('SIGTERM', False)])
def test_requeue_after_the_warning_only(tmp_path, monkeypatch, sig, requeued):
    """``on_signal='requeue'`` in a Slurm job requeues it after ``SIGUSR1``
    (the warning); after ``SIGTERM`` (``scancel``, a preemption) it saves
    and exits only."""
    import wrs_mm.engine.checkpoint_on_signal_hook as hook_module
    calls = []
    monkeypatch.setenv('SLURM_JOB_ID', '4242')
    monkeypatch.setattr(hook_module, 'requeue_slurm_job', calls.append)
    runner = Runner.from_cfg(
        dict(
            _cfg(tmp_path, False),
            custom_hooks=[
                dict(type='CheckpointOnSignalHook', on_signal='requeue'),
                dict(type='SignalAtIterHook', at=2, signal=sig)
            ]))
    with pytest.raises(TrainingPreempted):
        runner.train()
    assert calls == (['4242'] if requeued else [])
    assert (tmp_path / 'iter_3.pth').is_file()


def test_bad_arguments_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"on_signal='later'.*'requeue'"):
        CheckpointOnSignalHook(on_signal='later')
    with pytest.raises(ValueError, match=r"signals=\['SIGKILL'\].*SIGUSR1"):
        CheckpointOnSignalHook(signals=['SIGKILL'])
    monkeypatch.delenv('SLURM_JOB_ID', raising=False)
    runner = Runner.from_cfg(
        dict(
            _cfg(tmp_path, False),
            custom_hooks=[
                dict(type='CheckpointOnSignalHook', on_signal='requeue')
            ]))
    with pytest.raises(RuntimeError, match='needs a Slurm batch job'):
        runner.train()


def _shrunk(tmp_path, name, hooks=(), images=(40, 20)) -> str:
    """The shipped CIFAR WRS config on ``images`` (train, test) images,
    batch 5, 2 epochs, random augmentation, shuffled, every rank's weights
    saved at the end."""
    cfg = Config.fromfile(WRS_CFG)
    C.shrink_cls(
        cfg,
        tmp_path / name,
        images=images,
        epochs=2,
        batch_size=5,
        width=0.0625,
        augment=True)
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=True)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.custom_hooks += [dict(type='RankStateHook'), *hooks]
    cfg.custom_imports = dict(imports=['wrs_mm', 'rank_state_hook'])
    path = str(tmp_path / f'{name}.py')
    cfg.dump(path)
    return path


def _env() -> dict:
    return dict(
        os.environ,
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
        PYTHONPATH=os.pathsep.join([HERE, ROOT]),
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='',
        PORT=str(toy.free_port()))


def _tool(args, returncode=0) -> str:
    res = subprocess.run(
        args,
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == returncode, out[-5000:]
    return out


@NEEDS_MMCV
@pytest.mark.heavy
def test_train_py_on_signal_exits_75_and_resumes_bitwise(tmp_path):
    """``tools/train.py --on-signal exit``: SIGTERM in iteration 9 of 16
    (the second of epoch 2), status 75, ``iter_10.pth``; ``--resume``
    without the flag adds the hook for that checkpoint and ends bitwise
    equal to the uninterrupted run."""
    ref, run = tmp_path / 'ref', tmp_path / 'run'
    _tool([sys.executable, 'tools/train.py', _shrunk(tmp_path, 'ref')])
    cfg = _shrunk(tmp_path, 'run',
                  [dict(type='SignalAtIterHook', at=9, signal='SIGTERM')])
    out = _tool([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(run), '--on-signal', 'exit'
    ], 75)
    assert (f'CheckpointOnSignalHook: SIGTERM (on some rank): saved '
            f'{run}/iter_10.pth at epoch 2, iteration 10; exiting with status '
            '75') in out
    assert not (run / 'params_rank0.pt').exists()
    out = _tool([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(run), '--resume'
    ])
    assert 'was saved on a signal; CheckpointOnSignalHook' in out
    assert 'resumed from a signal checkpoint at iteration 10' in out
    a, b = (torch.load(d / 'params_rank0.pt') for d in (ref, run))
    toy.assert_same_weights(a['params'], b['params'])


@NEEDS_MMCV
@pytest.mark.heavy
def test_ranks_stop_together_when_one_is_signalled(tmp_path):
    """``tools/dist_train.sh`` on 2 processes: rank 1 alone gets SIGUSR1 in
    iteration 2 (of 8 per epoch: 80 images, 5 a rank a step); both ranks
    stop after it (``iter_3.pth``, one save), and the resumed 2-process run
    ends bitwise equal to an uninterrupted one, the ranks equal."""
    ref, run = tmp_path / 'ref', tmp_path / 'run'
    args = ['bash', 'tools/dist_train.sh']
    _tool(args + [_shrunk(tmp_path, 'ref', images=(80, 20)), '2'])
    cfg = _shrunk(
        tmp_path,
        'run', [dict(type='SignalAtIterHook', at=2, ranks=[1])],
        images=(80, 20))
    out = _tool(args + [cfg, '2', '--on-signal', 'exit'], 1)
    assert out.count('CheckpointOnSignalHook: SIGUSR1 (on some rank): saved '
                     f'{run}/iter_3.pth') == 1, out[-5000:]
    assert sorted(p.name for p in run.glob('*.pth')) == ['iter_3.pth']
    _tool(args + [cfg, '2', '--resume'])
    a, _ = toy.load_identical_ranks(ref)
    b, _ = toy.load_identical_ranks(run)
    toy.assert_same_weights(a['params'], b['params'])
