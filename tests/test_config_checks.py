"""A config whose custom_hooks replaces its base's (RTMDet's EMAHook and
PipelineSwitchHook) is reported by WeightRescaleHook before training; a
resume that mmengine's torch.load would refuse is refused before it, by
the torch and mmengine versions."""
import types
from unittest import mock

import pytest
import torch
from mmengine.config import Config
from mmengine.utils import digit_version

import wrs_mm  # noqa: F401
from wrs_mm.engine import WeightRescaleHook, config_checks
from wrs_mm.engine import weight_rescale_hook as hook_module
from wrs_mm.engine.config_checks import (WEIGHTS_ONLY_VAR,
                                         check_resume_loadable,
                                         dropped_base_hooks)
from conftest import NEEDS_MMDET

BASE = "_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'\n"


def _config(tmp_path, hooks: str) -> Config:
    path = tmp_path / 'cfg.py'
    path.write_text(BASE + f'custom_hooks = {hooks}\n')
    return Config.fromfile(str(path))


@NEEDS_MMDET  # mmdet's RTMDet config
def test_replaced_custom_hooks_are_found_and_kept_ones_are_not(tmp_path):
    replaced = _config(tmp_path, "[dict(type='WeightRescaleHook')]")
    assert dropped_base_hooks(replaced) == ['EMAHook', 'PipelineSwitchHook']
    kept = _config(tmp_path,
                   "_base_.custom_hooks + [dict(type='WeightRescaleHook')]")
    assert [h['type'] for h in kept.custom_hooks
            ] == ['EMAHook', 'PipelineSwitchHook', 'WeightRescaleHook']
    assert dropped_base_hooks(kept) == []
    assert dropped_base_hooks(Config(dict(custom_hooks=[]))) == []


@NEEDS_MMDET
def test_hook_warns_before_training(tmp_path):
    runner = types.SimpleNamespace(
        cfg=_config(tmp_path, "[dict(type='WeightRescaleHook')]"),
        model=torch.nn.Conv2d(3, 4, 3))
    with mock.patch.object(hook_module, 'print_log') as log:
        WeightRescaleHook().before_run(runner)
    (msg, ), kw = log.call_args
    assert 'EMAHook, PipelineSwitchHook' in msg and kw['level'] == 30
    assert '_base_.custom_hooks + [' in msg


@pytest.mark.parametrize('torch_v, mmengine_v, fails',
                         [((2, 5), '0.10.7', False), ((2, 6), '0.10.7', True),
                          ((2, 13), '0.10.3', True),
                          ((2, 13), '0.10.8', False),
                          ((2, 13), '0.11.0rc0', False),
                          ((2, 1), '0.11.0', False)])
def test_resume_refused_by_torch_and_mmengine_versions(tmp_path, monkeypatch,
                                                       torch_v, mmengine_v,
                                                       fails):
    monkeypatch.delenv(WEIGHTS_ONLY_VAR, raising=False)
    monkeypatch.setattr(config_checks, 'torch_version', lambda: torch_v)
    monkeypatch.setattr(config_checks, 'mmengine_version',
                        lambda: digit_version(mmengine_v))
    assert config_checks.resume_load_fails() is fails
    ckpt = tmp_path / 'iter_3.pth'
    runner = types.SimpleNamespace(
        _resume=True, _load_from=str(ckpt), work_dir=str(tmp_path))
    if not fails:
        check_resume_loadable(runner, 'WeightRescaleHook')
        return
    with pytest.raises(RuntimeError) as e:
        check_resume_loadable(runner, 'WeightRescaleHook')
    assert str(e.value) == (
        f'WeightRescaleHook: resuming {ckpt} will fail: mmengine loads it '
        'with torch.load, whose default on torch '
        f'{torch.__version__} (weights_only=True) refuses mmengine '
        f'checkpoints. For checkpoints you trust, set {WEIGHTS_ONLY_VAR}=1 '
        "in the environment (wrs_mm's tools/train.py does so itself).")
    monkeypatch.setenv(WEIGHTS_ONLY_VAR, '1')  # the fix the message names
    check_resume_loadable(runner, 'WeightRescaleHook')
    runner._resume = False  # nothing is loaded
    monkeypatch.delenv(WEIGHTS_ONLY_VAR)
    check_resume_loadable(runner, 'WeightRescaleHook')
