"""A bare clone runs its demo and its tests: the repository's own files in a
new folder with no ``shared/`` beside it, ``WRS_MM_DATA`` unset, so the data
can only come from the shipped ``sample_data/``."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from wrs_mm.testing import repo_root

ROOT = repo_root()


def bare_clone(dst) -> str:
    """The files ``git clone`` gives of the working tree once committed:
    the tracked ones and the untracked ones git does not ignore, as they are
    on disk (on CI's clean clone, exactly the commit's tree)."""
    names = subprocess.run([
        'git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'
    ],
                           cwd=ROOT,
                           capture_output=True,
                           check=True).stdout.decode().split('\0')
    for name in filter(None, names):
        src = os.path.join(ROOT, name)
        if os.path.isfile(src):  # a tracked file deleted and not committed
            os.makedirs(
                os.path.join(dst, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(src, os.path.join(dst, name))
    return str(dst)


def _run(cmd, cwd, env, timeout=900):
    res = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


@pytest.mark.heavy
def test_demo_and_a_training_test_run_from_a_bare_clone(tmp_path):
    clone = bare_clone(tmp_path / 'wrs_mm')
    assert not os.path.exists(tmp_path / 'shared')
    env = {k: v for k, v in os.environ.items() if k != 'WRS_MM_DATA'}
    env.update(PYTHONPATH=clone, OMP_NUM_THREADS='1')
    out = _run([
        sys.executable, '-c', 'import wrs_mm; from wrs_mm.testing import '
        'data_root; print(wrs_mm.__file__); print(data_root())'
    ], clone, env).splitlines()
    assert out == [
        os.path.join(clone, 'wrs_mm', '__init__.py'),
        os.path.join(clone, 'sample_data')
    ]

    # the demo, shrunk: both runs, the table and the plot
    work = tmp_path / 'demo'
    out = _run([
        sys.executable, 'tools/demo.py', '--epochs', '1', '--size', '96',
        '--work-dir',
        str(work)
    ], clone, env)
    assert 'YOLOv3 on coco_tiny (1 epochs of 32 images at 96px)' in out, out
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    assert summary['rescaled_weights'] == 72
    assert len(summary['refused_weights']) == 3
    for name in ('wrs', 'wd'):
        assert os.path.isfile(summary[name]['checkpoint'])
        assert summary[name]['loss_last'] < summary[name]['loss_first']
    assert os.path.getsize(work / 'norm_dynamics.png') > 10000

    # a training test of the suite, in the clone
    out = _run([
        sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
        'tests/test_classification.py::'
        'test_classifier_trains_with_wrs_through_train_py'
    ], clone, env)
    assert '1 passed' in out, out
