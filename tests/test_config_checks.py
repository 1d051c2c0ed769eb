"""A config whose custom_hooks replaces its base's (RTMDet's EMAHook and
PipelineSwitchHook) is reported by WeightRescaleHook before training."""
import types
from unittest import mock

import torch
from mmengine.config import Config

import wrs_mm  # noqa: F401
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.engine import weight_rescale_hook as hook_module
from wrs_mm.engine.config_checks import dropped_base_hooks
from conftest import NEEDS_MMDET

pytestmark = NEEDS_MMDET  # mmdet's RTMDet config

BASE = "_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'\n"


def _config(tmp_path, hooks: str) -> Config:
    path = tmp_path / 'cfg.py'
    path.write_text(BASE + f'custom_hooks = {hooks}\n')
    return Config.fromfile(str(path))


def test_replaced_custom_hooks_are_found_and_kept_ones_are_not(tmp_path):
    replaced = _config(tmp_path, "[dict(type='WeightRescaleHook')]")
    assert dropped_base_hooks(replaced) == ['EMAHook', 'PipelineSwitchHook']
    kept = _config(tmp_path,
                   "_base_.custom_hooks + [dict(type='WeightRescaleHook')]")
    assert [h['type'] for h in kept.custom_hooks
            ] == ['EMAHook', 'PipelineSwitchHook', 'WeightRescaleHook']
    assert dropped_base_hooks(kept) == []
    assert dropped_base_hooks(Config(dict(custom_hooks=[]))) == []


def test_hook_warns_before_training(tmp_path):
    runner = types.SimpleNamespace(
        cfg=_config(tmp_path, "[dict(type='WeightRescaleHook')]"),
        model=torch.nn.Conv2d(3, 4, 3))
    with mock.patch.object(hook_module, 'print_log') as log:
        WeightRescaleHook().before_run(runner)
    (msg, ), kw = log.call_args
    assert 'EMAHook, PipelineSwitchHook' in msg and kw['level'] == 30
    assert '_base_.custom_hooks + [' in msg
