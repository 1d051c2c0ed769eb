"""wrs_mm in the environment an mmdet 3.3 user already has: torch 2.1.2,
torchvision 0.16.2, numpy < 2, mmcv 2.1.0 with ops built for that torch,
mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2 and mmpretrain 1.2.0
(``tools/install_user_env.sh``, cached; ``make test`` makes it first).

* the built wheel, installed by plain pip with its dependencies (and with
  the ``mm`` extra), adds wrs_mm and changes nothing else (``pip freeze``);
* the plugin's own tests pass there (what needs a newer torch is skipped
  only with a reason naming the torch or Triton release it needs);
* mmdet's, mmseg's and mmpretrain's own installed ``tools/train.py`` train
  user configs with WRS and with the shifted regularizer, log the start-up
  table, and resume from the checkpoint they wrote.

The tests share one private copy of the cached environment (hard links, made
in a second; wrs_mm is installed into it once), so they run in one
pytest-xdist worker (``xdist_group``). The cached environment itself stays as
made, so test runs sharing the cache (two clones, CI beside a developer)
cannot uninstall each other's wrs_mm.
"""
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from test_packaging import (WRS_DEEPLAB, WRS_YOLO, YOLO_RESCALED, _run,
                            _unit_norm_convs, copy_checkout, installed_tool,
                            tiny_coco, tiny_voc)

from wrs_mm.testing import data_root, repo_root
from wrs_mm.testing import small_scale as C


def in_user_env(test):
    """A test that installs into or runs in the shared environment."""
    return pytest.mark.heavy(pytest.mark.xdist_group('user_env')(test))


ROOT = repo_root()
WRS_FASTER_SHIFTED = 'wrs_mm::faster_rcnn/faster-rcnn_r50_fpn_gn-ws-all_shifted-l2_1x_coco.py'  # noqa: E501
#: the plugin's test files run in the user environment
PLUGIN_TESTS = [
    'tests/test_core_rescale.py',
    'tests/test_core_invariance.py',
    'tests/test_core_shifted_lp.py',
    'tests/test_core_layouts.py',
    'tests/test_kernels.py',
    'tests/test_weight_rescale_hook.py',
    'tests/test_shifted_constructor.py',
    'tests/test_norm_dynamics_hook.py',
    'tests/test_plugin.py',
    'tests/test_training_modes.py',
    'tests/test_flexible_runner.py',
    'tests/test_config_checks.py',
    'tests/test_compile.py',
    # the hook's stops and bitwise resumes, in-process (its tools and DDP
    # tests run in the main environment)
    'tests/test_checkpoint_on_signal.py::'
    'test_stop_at_iteration_end_and_resume_bitwise',
    'tests/test_checkpoint_on_signal.py::test_requeue_after_the_warning_only',
    'tests/test_checkpoint_on_signal.py::test_bad_arguments_are_refused',
    # a checkpoint of the per-parameter layout written on torch 2.1 (the
    # layouts' trajectories are compared in the main environment)
    'tests/test_param_groups.py::'
    'test_resume_of_a_per_parameter_checkpoint_continues_as_it_was_trained'
]
#: what a skip in the user environment may name: the release it needs, or
#: a CUDA device (skipped on every CPU machine)
ALLOWED_SKIP = re.compile(r'needs (torch|Triton) >= \d+\.\d+|cuda-only: '
                          'needs a CUDA device')


def user_env_python(script: str = 'install_user_env.sh') -> str:
    """The python of the cached environment ``tools/<script>`` makes (the
    reference environment by default; made by the script if missing)."""
    res = subprocess.run(['bash', osp.join(ROOT, 'tools', script)],
                         capture_output=True,
                         text=True,
                         timeout=3600)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout.strip().splitlines()[-1]


def freeze(python: str) -> set:
    """``pip freeze --all`` of ``python``'s environment, as a set."""
    out = subprocess.run([
        python, '-m', 'pip', 'freeze', '--all', '--disable-pip-version-check'
    ],
                         capture_output=True,
                         text=True,
                         check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def user_run_env(python: str) -> dict:
    """A user's shell in that environment: its bin first, nothing of ours
    (no PYTHONPATH, no pytest-xdist worker variables), the data sets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(('PYTEST_', 'PYTHONPATH', 'TORCH_FORCE'))
    }
    env['PATH'] = osp.dirname(python) + os.pathsep + env['PATH']
    env['WRS_MM_DATA'] = data_root()
    return env


def test_setup_docs_and_environments_state_one_torch_range():
    """setup.py's torch range starts at the reference user environment's
    torch and ends below the next major release, so it excludes none that
    the tests run; the environments, the manual and ``wrs_mm.core.compat``
    name the same three releases."""

    def read(*path):
        with open(osp.join(ROOT, *path)) as f:
            return f.read()

    low, high = re.search(r"'torch>=(\d+\.\d+),<(\d+)'",
                          read('setup.py')).groups()
    user = re.search(r'torch==(\d+\.\d+\.\d+)',
                     read('tools', 'install_user_env.sh')).group(1)
    main = re.search(r'torch==(\d+\.\d+\.\d+)', read('tools',
                                                     'install.sh')).group(1)
    newest = re.search(r'^TORCH=(\d+\.\d+\.\d+)$',
                       read('tools', 'install_newest_torch_env.sh'),
                       re.M).group(1)
    assert user.startswith(low + '.')
    for version in (user, main, newest):
        assert int(version.split('.')[0]) < int(high), version
    table = read('docs', 'en', 'get_started.md')
    assert f'| torch | >= {low}, < {high} | {user} | {main} (CPU) | ' \
        f'{newest} (CUDA build, on the CPU) |' in table
    from wrs_mm.core import compat
    for version in (low, main.rsplit('.', 1)[0], newest.rsplit('.', 1)[0]):
        assert f'torch {version}' in compat.__doc__, version


def private_copy(python: str) -> str:
    """A copy of ``python``'s venv made of hard links, next to it (same file
    system): its python. Installing into it leaves the cached venv as it
    is: pip writes new files and unlinks old ones, never edits in place."""
    venv = osp.dirname(osp.dirname(python))
    copy = osp.join(
        tempfile.mkdtemp(prefix='run-', dir=osp.dirname(venv)), 'venv')
    subprocess.run(['cp', '-al', venv, copy], check=True)
    return osp.join(copy, 'bin', osp.basename(python))


@pytest.fixture(scope='module')
def user_env(tmp_path_factory):
    """The environment with the wheel installed as a user installs it:
    ``(python, freeze before, after the wheel, after the wheel[mm], what
    `pip install <checkout>[mm]` would install, the cached environment's
    python)``. The environment is this module's private copy of the cached
    one, removed at the end."""
    cached = user_env_python()
    python = private_copy(cached)
    yield install_wheel(python,
                        tmp_path_factory.mktemp('user_env')) + (cached, )
    shutil.rmtree(osp.dirname(osp.dirname(osp.dirname(python))))


def build_wheel(tmp) -> tuple:
    """``(checkout copy, wheel)``: wrs_mm's wheel built from a copy of the
    checkout in ``tmp``."""
    src = copy_checkout(str(tmp / 'src'))
    _run([
        sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
        '--no-build-isolation', '-w',
        str(tmp / 'dist'), src
    ],
         cwd=tmp)
    wheel, = glob.glob(str(tmp / 'dist' / 'wrs_mm-*.whl'))
    return src, wheel


def install_wheel(python: str, tmp, extras: bool = True, env=None) -> tuple:
    """Build wrs_mm's wheel, install it into ``python``'s environment as a
    user does (pip with ``env``), and report what changed: ``(python, freeze
    before, after the wheel)``, and with ``extras`` also after the
    wheel[mm] and what `pip install <checkout>[mm]` would install (see
    ``user_env``)."""
    src, wheel = build_wheel(tmp)
    pip = [python, '-m', 'pip', '--disable-pip-version-check']
    before = freeze(python)
    _run(pip + ['install', wheel], cwd=tmp, env=env)
    after = freeze(python)
    if not extras:
        return python, before, after
    _run(pip + ['install', wheel + '[mm]'], cwd=tmp, env=env)
    after_mm = freeze(python)
    # the one command of the manual, from a checkout: what it would install
    _run(
        pip + [
            'install', '--dry-run', '-q', '--report',
            str(tmp / 'report.json'), src + '[mm]'
        ],
        cwd=tmp,
        env=env)
    with open(tmp / 'report.json') as f:
        would = [
            i['metadata']['name'].replace('-', '_')
            for i in json.load(f)['install']
        ]
    return python, before, after, after_mm, would


@in_user_env
def test_installing_the_wheel_adds_wrs_mm_and_nothing_else(user_env):
    python, before, after, after_mm, would, cached = user_env
    added, removed = after - before, before - after
    assert {re.split(r' @ |==', a)[0] for a in added} == {'wrs_mm'}, added
    assert removed == set(), removed  # no torch, numpy, setuptools replaced
    assert after_mm == after, (after_mm - after, after - after_mm)
    assert would == ['wrs_mm'], would  # `pip install .[mm]` of a checkout
    assert any(p.startswith('torch==2.1.2') for p in after), sorted(after)
    # ... into this run's copy: the cached environment stays as made
    assert freeze(cached) == before, freeze(cached) ^ before
    # the installed wheel is what the user imports, from site-packages
    code = ('import wrs_mm, torch; print(wrs_mm.__file__); '
            'print(torch.__version__)')
    out = subprocess.run([python, '-c', code],
                         cwd=str(osp.dirname(ROOT)),
                         capture_output=True,
                         text=True,
                         check=True).stdout.split()
    assert 'site-packages' in out[0] and out[1].startswith('2.1.2'), out


def run_plugin_tests(python: str, allowed_skip) -> dict:
    """:data:`PLUGIN_TESTS` run by ``python`` on its environment's installed
    wheel (pytest from the environment's ``test-tools/``): all pass, at
    least 120, and every skip matches ``allowed_skip``. Returns the
    environment the tests ran with."""
    tools = osp.join(osp.dirname(osp.dirname(python)), 'test-tools')
    env = dict(
        user_run_env(python),
        PYTHONPATH=tools,
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    res = subprocess.run(
        # -P: the checkout's wrs_mm must not shadow the installed wheel
        [
            python, '-P', '-m', 'pytest', '-q', '-rs', '-p',
            'no:cacheprovider', *PLUGIN_TESTS
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=3000)
    out = res.stdout
    assert res.returncode == 0, out[-6000:]
    summary = out.strip().splitlines()[-1]
    passed = re.search(r'(\d+) passed', summary)
    assert passed and int(passed.group(1)) >= 120, summary
    for line in out.splitlines():
        if line.startswith('SKIPPED'):
            assert allowed_skip.search(line), line
    return env


@in_user_env
def test_plugin_tests_pass_on_torch_2_1(user_env):
    """The plugin's test files, run by that environment's python on its
    installed wheel: every test passes, or is skipped naming the newer
    release it needs."""
    python = user_env[0]
    env = run_plugin_tests(python, ALLOWED_SKIP)  # 126 passed measured
    installed = subprocess.run(
        [python, '-P', '-c', 'import wrs_mm; print(wrs_mm.__file__)'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True).stdout
    assert 'site-packages' in installed, installed


def train_and_resume(python, package, cfg_text, cwd, first, resumed,
                     more) -> tuple:
    """``package``'s own train.py on ``cfg_text`` (written in ``cwd``), then
    resumed from its checkpoint with ``more`` cfg-options; both logs."""
    cwd.mkdir()
    (cwd / 'user_cfg.py').write_text(cfg_text)
    env = user_run_env(python)
    cmd = [
        python,
        installed_tool(python, package, 'train.py'), 'user_cfg.py',
        '--work-dir', 'wd'
    ]
    _, log = _run(cmd, cwd, env)
    assert (cwd / 'wd' / first).is_file()
    _, log_resumed = _run(cmd + ['--resume', '--cfg-options', *more], cwd, env)
    assert 'resumed' in log_resumed.lower(), log_resumed[-3000:]
    assert (cwd / 'wd' / resumed).is_file()
    return log, log_resumed


def wrs_logs(log: str, log_resumed: str, rescaled: int) -> None:
    """The start-up table, and the resume of the checkpoint's selection."""
    m = re.search(
        r'WeightRescaleHook: rescaling (\d+) weights .* refused '
        r'(\d+)\n', log)
    assert m and int(m.group(1)) == rescaled, log[-3000:]
    assert 'parameter' in log and 'eps err' in log  # the table's header
    assert f'resumed: rescaling the {rescaled} weights' in log_resumed


def shifted_logs(log: str, log_resumed: str) -> int:
    """The regularizer's start-up summary, in both runs; its weight count."""
    found = [
        re.search(r'eps-shifted L2 \(coupled, eps=0\.001\) on (\d+) weights',
                  text) for text in (log, log_resumed)
    ]
    assert all(found), (log[-3000:], log_resumed[-3000:])
    counts = {int(m.group(1)) for m in found}
    assert len(counts) == 1 and counts.pop() > 0, counts
    assert 'Param groups:' in log
    return int(found[0].group(1))


@in_user_env
def test_mmdet_own_train_tool_with_wrs_and_the_shifted_regularizer(
        user_env, tmp_path):
    python = user_env[0]
    log, resumed = train_and_resume(python, 'mmdet', tiny_coco(WRS_YOLO),
                                    tmp_path / 'wrs', 'epoch_1.pth',
                                    'epoch_2.pth', ['train_cfg.max_epochs=2'])
    wrs_logs(log, resumed, YOLO_RESCALED)
    _unit_norm_convs(
        str(tmp_path / 'wrs' / 'wd' / 'epoch_2.pth'), YOLO_RESCALED)
    # the GN+WS Faster R-CNN with the eps-shifted L2: no hook, the
    # constructor's paramwise_cfg.shifted_reg alone
    text = tiny_coco(WRS_FASTER_SHIFTED).replace(
        "custom_hooks = [dict(type='WeightRescaleHook', interval=1)]",
        'custom_hooks = []')
    log, resumed = train_and_resume(python, 'mmdet', text,
                                    tmp_path / 'shifted', 'epoch_1.pth',
                                    'epoch_2.pth', ['train_cfg.max_epochs=2'])
    assert shifted_logs(log, resumed) >= 50  # the WS convs of the R-50


@in_user_env
def test_mmseg_own_train_tool_with_wrs_and_the_shifted_regularizer(
        user_env, tmp_path):
    python = user_env[0]
    voc = C.make_voc_from_coco(str(tmp_path / 'voc'), 2, 2, size=64)
    log, resumed = train_and_resume(python, 'mmseg',
                                    tiny_voc(WRS_DEEPLAB, voc),
                                    tmp_path / 'wrs', 'iter_2.pth',
                                    'iter_4.pth', ['train_cfg.max_iters=4'])
    from test_packaging import DEEPLAB_RESCALED
    wrs_logs(log, resumed, DEEPLAB_RESCALED)
    # a user's shifted-L2 DeepLabv3: the BN convs under (||w|| - eps)^2
    wd = WRS_DEEPLAB.replace('adamw-wrs-tau10', 'adamw-wd')
    text = tiny_voc(wd, voc).replace(
        "custom_hooks = [dict(type='WeightRescaleHook', interval=1)]",
        "custom_hooks = []\n"
        "optim_wrapper = dict(constructor='WRSOptimWrapperConstructor', "
        "paramwise_cfg=dict(shifted_reg=dict(eps=1e-3, p=2, "
        "mode='coupled')))")
    log, resumed = train_and_resume(python, 'mmseg', text,
                                    tmp_path / 'shifted', 'iter_2.pth',
                                    'iter_4.pth', ['train_cfg.max_iters=4'])
    # every conv WRS rescales, and the one it refuses for its BN eps error
    # (WeightRescaleHook.max_invariance_error; the regularizer has no limit)
    assert shifted_logs(log, resumed) == DEEPLAB_RESCALED + 1


def cifar_resnet18(cifar_list: str, head: str) -> str:
    """A user's mmpretrain config: ``head`` (its ``_base_``, mmpretrain's own
    CIFAR-10 ResNet-18, and the wrs_mm lines), read from the shipped CIFAR-10
    subset by mmpretrain's ``CustomDataset`` (the images as JPEG class
    folders), 20 images, batch 2 (10 steps an epoch: the snippet's tau), one
    epoch."""
    cifar = osp.join(data_root(), 'cifar10_subset')
    return head + f"""
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='{cifar}',
        data_prefix='train',
        ann_file='{cifar_list}',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='RandomCrop', crop_size=32, padding=4),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(type='PackInputs')
        ]))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=100)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
"""


@in_user_env
def test_mmpretrain_own_train_tool_with_wrs_and_the_shifted_regularizer(
        user_env, tmp_path):
    python = user_env[0]
    classes = sorted(
        os.listdir(osp.join(data_root(), 'cifar10_subset', 'train')))
    listing = tmp_path / 'train.txt'
    listing.write_text(''.join(f'{c}/{i:04d}.jpg {k}\n'
                               for k, c in enumerate(classes)
                               for i in range(2)))
    # the classification guide's snippet, as a user pastes it
    from test_doc_snippets import SNIPPETS
    wrs, = [c for _, c in SNIPPETS if 'mmpretrain::' in c]
    log, resumed = train_and_resume(python, 'mmpretrain',
                                    cifar_resnet18(str(listing), wrs),
                                    tmp_path / 'wrs', 'epoch_1.pth',
                                    'epoch_2.pth', ['train_cfg.max_epochs=2'])
    # every conv of the ResNet-18 (1 stem + 16 in blocks + 3 downsamples)
    wrs_logs(log, resumed, 20)
    _unit_norm_convs(str(tmp_path / 'wrs' / 'wd' / 'epoch_2.pth'), 20)
    shifted = ("_base_ = 'mmpretrain::resnet/resnet18_8xb16_cifar10.py'\n"
               "custom_imports = dict(imports=['wrs_mm'])\n"
               "optim_wrapper = dict(constructor='WRSOptimWrapperConstructor',"
               " paramwise_cfg=dict(shifted_reg=dict(eps=1e-3, p=2, "
               "mode='coupled')))\n")
    log, resumed = train_and_resume(python, 'mmpretrain',
                                    cifar_resnet18(str(listing), shifted),
                                    tmp_path / 'shifted', 'epoch_1.pth',
                                    'epoch_2.pth', ['train_cfg.max_epochs=2'])
    assert shifted_logs(log, resumed) == 20
