"""Writes the checkpoint ``tests/test_param_groups.py`` resumes: the toy run
of ``toy.layout_case_cfg`` trained by wrs_mm as it was before param groups
were merged by settings (one group per parameter), so that a checkpoint of
that code is tested to resume, with what that code went on to train. Run it
with each torch the tests run on (the main environment's, the user
environment's, ``make user-env``, and the newest-torch environment's,
``tools/install_newest_torch_env.sh``):

    git worktree add /tmp/wrs_mm_7499571 7499571
    PYTHONPATH=/tmp/wrs_mm_7499571 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \\
        python tests/data/per_param_groups/make_checkpoint.py

It writes ``torch-<version>/``: ``iter_3.pth``, the checkpoint at iteration
3, and ``final.pt``, the model's parameters and buffers after 6 iterations,
on one thread (CPU convolutions round differently with the thread count and
the torch release; numpy 2's pickles do not load under numpy 1).

In an environment without mmcv (the newest-torch one), that commit's
``wrs_mm/__init__.py`` must not import its ``classification`` and
``counting`` packages (they import ``mmcv.cnn``): ``torch-2.15.0/`` was
written with that one line changed to ``from . import engine, registry``,
and pytest on ``PYTHONPATH`` (``<venv>/test-tools``) for ``toy``'s conftest.
"""
import os
import os.path as osp
import shutil
import sys
import tempfile

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))  # tests/, for toy

from mmengine.runner import Runner  # noqa: E402

import wrs_mm.engine.param_groups as param_groups  # noqa: E402
import toy  # noqa: E402

assert not hasattr(param_groups, 'group_by_settings'), (
    'run this with wrs_mm from before the merged layout (see the docstring)')
torch.set_num_threads(1)
out = osp.join(HERE, 'torch-' + torch.__version__.split('+')[0])
os.makedirs(out, exist_ok=True)
with tempfile.TemporaryDirectory() as work:
    runner = Runner.from_cfg(toy.layout_case_cfg(work))
    runner.train()
    shutil.copy(osp.join(work, 'iter_3.pth'), osp.join(out, 'iter_3.pth'))
    torch.save(
        {
            k: v.detach().clone()
            for k, v in runner.model.state_dict().items()
        }, osp.join(out, 'final.pt'))
print('wrote', out, 'with wrs_mm from', param_groups.__file__)
