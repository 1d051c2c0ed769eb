"""Every config snippet of the README and the manual, pasted into a user
config as a user would: on top of a real config (its own ``_base_`` if it
has one, else the mmdet config the snippet is written for), the Runner is
built and one training step runs on coco_tiny. A snippet that stops working
fails here.

A snippet is a ```python block whose statements are all assignments (a
config's syntax). The mmpretrain snippet of the classification guide needs
mmpretrain, which the main environment cannot import (torchvision); it runs
in the reference user environment (``tests/test_user_env.py``).
"""
import ast
import glob
import os
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from wrs_mm.engine import NormDynamicsHook, WeightRescaleHook
from wrs_mm.testing import get_hook, repo_root
from wrs_mm.testing import small_scale as C

ROOT = repo_root()
#: the configs snippets without a ``_base_`` are written for
FASTER_R50 = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
FASTER_GN_WS = ('wrs_mm::faster_rcnn/'
                'faster-rcnn_r50_fpn_gn-ws-all_wd_1x_coco.py')
RTMDET = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'


def config_snippets(root: str = ROOT) -> list:
    """``(file:line, code)`` of every config snippet in README.md and
    docs/en."""
    files = ['README.md'] + sorted(
        glob.glob(osp.join(root, 'docs', 'en', '*.md')) +
        glob.glob(osp.join(root, 'docs', 'en', '*', '*.md')))
    out = []
    for path in files:
        with open(osp.join(root, path)) as f:
            text = f.read()
        for m in re.finditer(r'```python\n(.*?)```', text, re.S):
            body = ast.parse(m.group(1)).body
            if body and all(isinstance(s, ast.Assign) for s in body):
                line = text[:m.start()].count('\n') + 2
                out.append((f'{osp.relpath(osp.join(root, path), root)}:'
                            f'{line}', m.group(1)))
    return out


SNIPPETS = config_snippets()


def base_for(code: str) -> str:
    """The config a snippet without ``_base_`` is pasted into."""
    if '_base_.custom_hooks' in code:
        return RTMDET  # a base with custom hooks of its own
    if 'shifted_reg' in code:
        return FASTER_GN_WS  # the shifted L2 is for weight-standardised convs
    return FASTER_R50


def test_the_manual_has_the_config_snippets_this_module_runs():
    assert len(SNIPPETS) >= 10, [s for s, _ in SNIPPETS]
    assert sum('mmpretrain::' in c for _, c in SNIPPETS) == 1


@pytest.mark.heavy
@pytest.mark.parametrize(
    'where, code', [s for s in SNIPPETS if 'mmpretrain::' not in s[1]],
    ids=[s[0] for s in SNIPPETS if 'mmpretrain::' not in s[1]])
def test_config_snippet_builds_and_trains_a_step(where, code, tmp_path):
    text = code if re.search(r'^_base_ = ', code, re.M) else \
        f"_base_ = '{base_for(code)}'\n{code}"
    if 'custom_imports' not in text:  # the snippets next to it add it
        text += "\ncustom_imports = dict(imports=['wrs_mm'])\n"
    (tmp_path / 'user_cfg.py').write_text(text)
    cfg = Config.fromfile(str(tmp_path / 'user_cfg.py'))
    C.shrink_det(
        cfg, tmp_path / 'work', size=128, epochs=1, images=1, batch_size=1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1, where
    if 'WeightRescaleHook' in text or re.search(r"^_base_ = 'wrs_mm::\S*wrs",
                                                text, re.M):
        hook = get_hook(runner, WeightRescaleHook)
        assert hook.rescaler is not None and len(hook.rescaler) > 0, where
    if 'NormDynamicsHook' in code:
        assert get_hook(runner, NormDynamicsHook) is not None, where
        assert os.path.isfile(runner.work_dir + '/norm_dynamics.jsonl')
    if 'shifted_reg' in code:
        roles = [
            g.get('wrs_mm_role') for g in runner.optim_wrapper.param_groups
        ]
        assert 'shifted_lp' in roles, where
    if '_base_.custom_hooks' in code:
        names = {type(h).__name__ for h in runner.hooks}
        assert {'EMAHook', 'PipelineSwitchHook',
                'WeightRescaleHook'} <= names, names
