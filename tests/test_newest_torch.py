"""wrs_mm beside the newest torch release: torch 2.15.0 (its CUDA build, on
the CPU), numpy and mmengine 0.10.7 (``tools/install_newest_torch_env.sh``,
cached; ``make test`` makes it first). mmcv 2.1.0 does not build against
this torch, so there is no mmcv, mmdet or mmseg here.

* the built wheel, installed by plain pip with its dependencies, adds wrs_mm
  and changes nothing else (``pip freeze``);
* the plugin's own tests pass there on the installed wheel: the core, the
  hooks and the constructor through mmengine's Runner, resume, AMP,
  accumulation, 2-process DDP on gloo, FlexibleRunner and ``compile=True``
  (what needs mmcv is skipped, saying so).

As in ``tests/test_user_env.py``, the tests share one private hard-linked
copy of the cached environment and run in one pytest-xdist worker.
"""
import os
import re
import shutil
import subprocess

import pytest
from test_user_env import (ROOT, freeze, install_wheel, private_copy,
                           run_plugin_tests, user_env_python)

#: the torch release the environment holds (tools/install_newest_torch_env.sh)
with open(os.path.join(ROOT, 'tools', 'install_newest_torch_env.sh')) as f:
    NEWEST = re.search(r'^TORCH=(\S+)$', f.read(), re.M).group(1)
#: what a skip there may name: a CUDA device, or mmcv, which does not build
ALLOWED_SKIP = re.compile(
    r'cuda-only: needs a CUDA device|needs mmcv[a-z ,]*, '
    'which this environment does not have')
#: these machines cap torch in pip's own configuration (a constraints file);
#: a user's pip has no such cap, so the tests' pip does without it
USER_PIP = dict(PIP_CONSTRAINT=os.devnull)


def in_newest_env(test):
    """A test that installs into or runs in the newest-torch environment."""
    return pytest.mark.heavy(pytest.mark.xdist_group('newest_torch')(test))


@pytest.fixture(scope='module')
def newest_env(tmp_path_factory):
    """``(python, freeze before, after the wheel, the cached environment's
    python)`` of this module's private copy of the cached environment, with
    the wheel installed as a user installs it; removed at the end."""
    cached = user_env_python('install_newest_torch_env.sh')
    python = private_copy(cached)
    python, before, after = install_wheel(
        python,
        tmp_path_factory.mktemp('newest_env'),
        extras=False,
        env=dict(os.environ, **USER_PIP))
    yield python, before, after, cached
    shutil.rmtree(os.path.dirname(os.path.dirname(os.path.dirname(python))))


@in_newest_env
def test_installing_the_wheel_adds_wrs_mm_and_nothing_else(newest_env):
    python, before, after, cached = newest_env
    added, removed = after - before, before - after
    assert {re.split(r' @ |==', a)[0] for a in added} == {'wrs_mm'}, added
    assert removed == set(), removed  # torch, numpy, setuptools kept
    assert f'torch=={NEWEST}' in after, sorted(after)
    assert freeze(cached) == before, freeze(cached) ^ before


@in_newest_env
def test_plugin_tests_pass_on_the_newest_torch(newest_env):
    """The plugin's test files, run by that environment's python on its
    installed wheel: every test passes, or is skipped for want of a CUDA
    device or of mmcv."""
    python = newest_env[0]
    env = run_plugin_tests(python, ALLOWED_SKIP)
    code = ('import torch, wrs_mm, sys; print(torch.__version__); '
            'print(wrs_mm.__file__); print("mmcv" in sys.modules)')
    version, path, mmcv = subprocess.run([python, '-P', '-c', code],
                                         cwd=ROOT,
                                         env=env,
                                         capture_output=True,
                                         text=True,
                                         check=True).stdout.split()
    assert version.startswith(NEWEST) and 'site-packages' in path
    assert mmcv == 'False'
