"""The tree passes the linters the project configures (setup.cfg,
.pre-commit-config.yaml): flake8, isort and yapf, as mmdet runs them."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREES = [
    'wrs_mm', 'tests', 'tools', 'benchmarks', 'configs', 'setup.py',
    'wrs_mm_config_hook.py'
]


@pytest.mark.parametrize('tool, args', [
    ('flake8', TREES),
    ('isort', ['--check-only', '--diff', *TREES]),
    ('yapf', ['--diff', '--recursive', *TREES]),
])
def test_tree_is_clean(tool, args):
    res = subprocess.run([sys.executable, '-m', tool, *args],
                         cwd=ROOT,
                         capture_output=True,
                         text=True,
                         timeout=600)
    report = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and not (tool == 'yapf' and report), \
        f'{tool} finds problems (run `make lint`):\n{report[-3000:]}'
