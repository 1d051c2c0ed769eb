"""Shared fixtures. ``tests/`` is deliberately not a package (the
mmsegmentation wheel installs a top-level ``tests``)."""
import functools
import importlib.util
import os

import pytest
import torch
from mmengine.config import config as mmengine_config
from torch import nn

from wrs_mm.core.compat import torch_version

os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
if os.environ.get('PYTEST_XDIST_WORKER'):
    # two workers on two cores: one thread each, and for the tools they start
    torch.set_num_threads(1)
    os.environ['OMP_NUM_THREADS'] = '1'
elif os.environ.get('OMP_NUM_THREADS') != '1':
    # (a suite started by such a worker, as tests/test_version_bounds.py
    # does, inherits OMP_NUM_THREADS=1 and keeps one thread)
    torch.set_num_threads(2)
# Tests compare numbers across devices and against references: no TF32 on GPUs
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def _memoize_config_formatting() -> None:
    """mmengine formats a config's text with yapf (0.4 s for a detector's)
    each time it logs, dumps or checkpoints it: six times per Runner. The
    suite runs over a hundred Runners in this process, so the same texts are
    formatted once here and reused; the output is yapf's, unchanged. Tools
    run in their own interpreters are not affected."""
    format_code = mmengine_config.FormatCode

    @functools.lru_cache(maxsize=128)
    def cached(text, style):
        return format_code(text, style_config=dict(style))

    def memoized(text, style_config=None, **kw):
        if kw or not isinstance(style_config, dict):
            return format_code(text, style_config=style_config, **kw)
        return cached(text, tuple(sorted(style_config.items())))

    mmengine_config.FormatCode = memoized


_memoize_config_formatting()


def needs_torch(version: tuple, what: str):
    """Skip on a torch older than ``version`` (the reference user
    environment has torch 2.1), naming what needs the newer release."""
    return pytest.mark.skipif(
        torch_version() < version,
        reason=f'{what} needs torch >= {version[0]}.{version[1]}')


#: tests with mmcv's layers, or with mmdet / mmseg configs (the newest-torch
#: environment has neither: mmcv 2.1.0 does not build against torch 2.15)
NEEDS_MMCV = pytest.mark.skipif(
    importlib.util.find_spec('mmcv') is None,
    reason='needs mmcv, which this environment does not have')
NEEDS_MMDET = pytest.mark.skipif(
    importlib.util.find_spec('mmdet') is None
    or importlib.util.find_spec('mmseg') is None,
    reason='needs mmcv, mmdet and mmseg, which this environment does not have')

#: tests that emulate AMP's loss scaling on CPU
CPU_GRAD_SCALER = needs_torch((2, 3), "torch.amp.GradScaler('cpu')")


class BNNet(nn.Module):
    """Small VGG-style net: every conv followed by BatchNorm, a linear head."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def bnnet():
    torch.manual_seed(0)
    return BNNet().train()


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'heavy: a test of 10 s or more (tools run in their own '
        'processes, trainings); started first when tests run in parallel')


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """In parallel runs (``make test``: two pytest-xdist workers) the heavy
    tests start first, so that no long test is left for the end while the
    other worker idles. Every worker collects the same order.

    Under ``--dist loadgroup`` (after pytest-xdist's own hook), a test with
    an ``xdist_group`` whose id lacks ``@<group>`` stops the run: the group
    would be spread over both workers at once (two local Slurm clusters on
    one host, two copies of a cached environment). pytest 9 with
    pytest-xdist 3.8 does that; setup.py asks for pytest < 9."""
    if not os.environ.get('PYTEST_XDIST_WORKER'):
        return
    items.sort(key=lambda item: item.get_closest_marker('heavy') is None)
    lost = [
        item.nodeid for item in items if config.getoption('loadgroup', False)
        and item.get_closest_marker('xdist_group') and '@' not in item.nodeid
    ]
    if lost:
        raise pytest.UsageError(
            f'pytest-xdist dropped the xdist_group of {lost[:3]}: '
            f'pytest {pytest.__version__} with this pytest-xdist would run '
            'a group on both workers; install pytest<9 (setup.py [tests])')
