"""The oldest mmengine, mmdet and mmsegmentation that setup.py accepts
(those that accept mmcv 2.1.0, so no new mmcv build), installed over this
environment into a new venv: the plugin's Runner-level tests and mmdet's and
mmseg's own tools on ``wrs_mm::`` configs pass with them."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest
from test_packaging import _own_tools_on_wrs_mm_configs

from wrs_mm.testing import repo_root
import toy

ROOT = repo_root()
PACKAGES = ('mmengine', 'mmdet', 'mmsegmentation')
SUBSET = [
    'tests/test_weight_rescale_hook.py', 'tests/test_shifted_constructor.py',
    'tests/test_norm_dynamics_hook.py', 'tests/test_plugin.py'
]


def lower_bounds() -> dict:
    """``{package: oldest version}`` from setup.py's ``mm`` extra."""
    with open(osp.join(ROOT, 'setup.py')) as f:
        text = f.read()
    out = {}
    for name in PACKAGES:
        m = re.search(rf"'{name}>=([\d.]+),<[\d.]+'", text)
        assert m, f'setup.py declares no range for {name}'
        out[name] = m.group(1)
    return out


@pytest.mark.heavy
def test_oldest_supported_openmmlab_versions(tmp_path):
    bounds = lower_bounds()
    py, site = toy.side_venv(tmp_path / 'venv',
                             [ROOT, sysconfig.get_paths()['purelib']])
    # the config-path hook, as make install wrote it for this environment
    shutil.copy(
        osp.join(sysconfig.get_paths()['purelib'], 'wrs_mm_config_hook.pth'),
        site)
    res = subprocess.run([
        sys.executable, '-m', 'pip', '-q', '--disable-pip-version-check',
        '--python', py, 'install', '--no-deps',
        *[f'{k}=={v}' for k, v in bounds.items()]
    ],
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    got = subprocess.run([
        py, '-c', 'import mmengine, mmdet, mmseg; print(mmengine.__version__,'
        ' mmdet.__version__, mmseg.__version__)'
    ],
                         capture_output=True,
                         text=True,
                         check=True).stdout.split()
    assert got == [bounds[k] for k in PACKAGES], got
    res = subprocess.run(
        [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *SUBSET],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # a pytest of its own, not an xdist worker of this one
        env=dict(
            {
                k: v
                for k, v in os.environ.items() if not k.startswith('PYTEST_')
            },
            TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'),
        timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:]
    summary = res.stdout.strip().splitlines()[-1]
    passed = re.search(r'(\d+) passed', summary)
    assert passed and int(passed.group(1)) >= 40, summary
    assert not re.search(r'\d+ (failed|error)', summary), summary
    # mmdet's and mmseg's own train.py of those releases
    _own_tools_on_wrs_mm_configs(
        tmp_path,
        py,
        dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'),
        test=False)
