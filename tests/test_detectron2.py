"""wrs_mm for Detectron2 users, in the Detectron2 environment
(``tools/install_detectron2_env.sh``: torch 2.1.2, torchvision 0.16.2,
Detectron2 built from ``third_party/``, no OpenMMLab package), with the
wheel installed as a user installs it:

* installing the wheel adds wrs_mm and nothing else;
* ``tests/detectron2_cases.py`` passes there: the analysis on Detectron2's
  own layers and models, the optimizer parameters, the hooks on
  Detectron2's trainers, DDP through its ``launch``;
* ``tools/detectron2/lazyconfig_train_net.py`` trains the shipped LazyConfig
  Mask R-CNN with WRS (shrunk, on coco_tiny through Detectron2's builtin
  ``coco_2017_*`` registration), evaluates with ``COCOEvaluator``, and
  resumes with ``--resume``; ``tools/detectron2/train_net.py`` trains and
  evaluates the yacs Faster R-CNN;
* Detectron2's own ``tools/lazyconfig_train_net.py`` and
  ``tools/train_net.py`` train the weight-decay twins, and its lazyconfig
  tool, which ignores ``train.hooks``, refuses the WRS config at the first
  forward instead of training it silently without WRS.

One private copy of the cached environment per run (hard links), so the
tests share one pytest-xdist worker.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import tarfile

import pytest
import torch
from test_packaging import _run
from test_user_env import build_wheel, freeze, private_copy, user_env_python

from wrs_mm.testing import coco_root, repo_root

ROOT = repo_root()
LSJ_WRS = 'configs/detectron2/mask_rcnn_R_50_FPN_syncbn_wrs-tau10_100ep_lsj.py'
LSJ_WD = 'configs/detectron2/mask_rcnn_R_50_FPN_syncbn_wd_100ep_lsj.py'
YACS_WRS = 'configs/detectron2/faster_rcnn_R_50_FPN_syncbn_wrs-tau10_1x.yaml'
YACS_WD = 'configs/detectron2/faster_rcnn_R_50_FPN_syncbn_wd_1x.yaml'
#: one CPU process: BN for the configs' SyncBN (torch's refuses a CPU)
LAZY_BN = [
    f'{k}=BN'
    for k in ('model.backbone.bottom_up.stem.norm',
              'model.backbone.bottom_up.stages.norm', 'model.backbone.norm',
              'model.roi_heads.box_head.conv_norm',
              'model.roi_heads.mask_head.conv_norm')
]
LAZY_CPU = [
    'train.device=cpu',
    'train.amp.enabled=False',
    'train.init_checkpoint=',
    'dataloader.train.total_batch_size=2',
    'dataloader.train.num_workers=0',
    'dataloader.test.num_workers=0',
    'train.log_period=1',
    'model.roi_heads.box_predictor.test_score_thresh=0.0'  # a few steps' AP
]
YACS_CPU = [
    'MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', 'MODEL.RESNETS.NORM', 'BN',
    'MODEL.FPN.NORM', 'BN', 'SOLVER.IMS_PER_BATCH', '2',
    'DATALOADER.NUM_WORKERS', '0', 'INPUT.MIN_SIZE_TRAIN', '(160,)',
    'INPUT.MAX_SIZE_TRAIN', '224', 'INPUT.MIN_SIZE_TEST', '160',
    'INPUT.MAX_SIZE_TEST', '224'
]


def in_d2_env(test):
    return pytest.mark.heavy(pytest.mark.xdist_group('detectron2')(test))


@pytest.fixture(scope='module')
def d2(tmp_path_factory):
    """``(python, freeze before, after, checkout copy, Detectron2's source,
    run env)``: a private copy of the Detectron2 environment with the wheel
    installed by plain pip, the data sets as ``$DETECTRON2_DATASETS``."""
    tmp = tmp_path_factory.mktemp('d2')
    python = private_copy(user_env_python('install_detectron2_env.sh'))
    src, wheel = build_wheel(tmp)
    before = freeze(python)
    _run([python, '-m', 'pip', 'install', '-q', wheel], cwd=tmp)
    after = freeze(python)
    with tarfile.open(
            osp.join(ROOT, 'third_party', 'detectron2-02b5c4e.tar.gz')) as f:
        f.extractall(tmp / 'vendor', filter='data')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(('PYTEST_', 'PYTHONPATH', 'TORCH_FORCE'))
    }
    env.update(
        PATH=osp.dirname(python) + os.pathsep + env['PATH'],
        DETECTRON2_DATASETS=coco_datasets(tmp / 'datasets'),
        OMP_NUM_THREADS='1')
    yield python, before, after, src, str(tmp / 'vendor' / 'detectron2'), env
    shutil.rmtree(osp.dirname(osp.dirname(osp.dirname(python))))


def coco_datasets(root) -> str:
    """``<root>/coco`` as Detectron2's builtin ``coco_2017_train`` /
    ``coco_2017_val`` expect it: coco_tiny's images, 8 train and 3 val."""
    coco = osp.join(root, 'coco')
    os.makedirs(osp.join(coco, 'annotations'))
    for split, n in (('train', 8), ('val', 3)):
        os.symlink(
            osp.join(coco_root(), f'{split}2017'),
            osp.join(coco, f'{split}2017'))
        with open(
                osp.join(coco_root(), 'annotations',
                         f'instances_{split}2017.json')) as f:
            ann = json.load(f)
        ann['images'] = ann['images'][:n]
        ids = {i['id'] for i in ann['images']}
        ann['annotations'] = [
            a for a in ann['annotations'] if a['image_id'] in ids
        ]
        with open(
                osp.join(coco, 'annotations', f'instances_{split}2017.json'),
                'w') as f:
            json.dump(ann, f)
    return str(root)


def shrunk_lazy(config: str, dst: str) -> str:
    """A LazyConfig that loads ``config`` and resizes the images to 160-224
    px (the LSJ crop is 1024)."""
    with open(dst, 'w') as f:
        f.write(f"""import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

_cfg = LazyConfig.load({config!r})
dataloader, lr_multiplier, model, optimizer, train = (
    _cfg.dataloader, _cfg.lr_multiplier, _cfg.model, _cfg.optimizer,
    _cfg.train)
_resize = L(T.ResizeShortestEdge)(short_edge_length=160, max_size=224)
dataloader.train.mapper.augmentations = [_resize]
dataloader.train.mapper.recompute_boxes = False
dataloader.test.mapper.augmentations = [_resize]
""")
    return dst


def _trainer_state(python, path, env) -> dict:
    code = ('import sys, torch, json; c = torch.load(sys.argv[1]); '
            'print(json.dumps(dict(iteration=c["trainer"]["iteration"], '
            'hooks={k: {kk: vv for kk, vv in v.items() if kk in '
            '("steps", "num_rescales")} for k, v in '
            'c["trainer"]["hooks"].items()})))')
    out = subprocess.run([python, '-c', code, path],
                         env=env,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    return json.loads(out)


def _unit_rows(work: str) -> float:
    """The largest |row norm - 1| of the rescaled weights in
    ``model_final.pth`` (read with this interpreter's torch)."""
    with open(osp.join(work, 'wrs_invariance.json')) as f:
        names = [r['name'] for r in json.load(f) if r['rescaled']]
    state = torch.load(
        osp.join(work, 'model_final.pth'),
        map_location='cpu',
        weights_only=False)['model']
    return max(
        float((state[n].flatten(1).norm(dim=1) - 1).abs().max())
        for n in names), len(names)


@in_d2_env
def test_installing_the_wheel_adds_wrs_mm_and_nothing_else(d2):
    python, before, after, *_ = d2
    added, removed = after - before, before - after
    assert {a.split('==')[0].split(' @ ')[0] for a in added} == {'wrs_mm'}
    assert removed == set(), removed
    assert not any(p.startswith(('mmengine', 'mmcv')) for p in after)


@in_d2_env
def test_cases_pass_in_the_detectron2_environment(d2, tmp_path):
    python, _, _, _, _, env = d2
    shutil.copy(osp.join(ROOT, 'tests', 'detectron2_cases.py'), tmp_path)
    env = dict(
        env,
        PYTHONPATH=osp.join(osp.dirname(osp.dirname(python)), 'test-tools'))
    # short tracebacks, failures summarised last: what the message shows
    code, out = _run([
        python, '-m', 'pytest', '-q', '-rfEs', '--tb=short', '-p',
        'no:cacheprovider', 'detectron2_cases.py'
    ],
                     cwd=tmp_path,
                     env=env)
    assert re.search(r'^13 passed', out, re.M) and 'skipped' not in out, \
        out[-3000:]


@in_d2_env
def test_lazyconfig_tool_trains_evaluates_and_resumes_wrs(d2, tmp_path):
    python, _, _, src, _, env = d2
    tool = osp.join(src, 'tools', 'detectron2', 'lazyconfig_train_net.py')
    cfg = shrunk_lazy(osp.join(src, LSJ_WRS), str(tmp_path / 'cfg.py'))
    work = str(tmp_path / 'work')
    opts = LAZY_CPU + LAZY_BN + [
        f'train.output_dir={work}', 'train.checkpointer.period=2',
        'train.hooks.0.interval=2'
    ]
    _, out = _run(
        [python, tool, '--config-file', cfg] + opts +
        ['train.max_iter=4', 'train.eval_period=4'],
        cwd=tmp_path,
        env=env)
    assert 'WeightRescaleHook: rescaling 69 weights to norm 1 every 2 ' \
        'optimizer steps, refused 9' in out, out[-3000:]
    assert 'followed by' not in out  # no frozen BN in this model
    assert 'has been overridden' not in out  # the LR scheduler's warning
    # COCOEvaluator on the 3 val images (4 steps from scratch predict
    # nothing: its AP is nan)
    assert 'Start inference on 3 batches' in out, out[-3000:]
    assert 'copypaste: Task: bbox' in out
    with open(osp.join(work, 'metrics.json')) as f:
        metrics = [json.loads(line) for line in f]
    rescaled_at = [m['iteration'] for m in metrics if 'wrs_norm_mean' in m]
    assert rescaled_at == [1, 3], rescaled_at  # steps 2 and 4
    worst, n = _unit_rows(work)
    assert n == 69 and worst < 1e-5, worst
    state = _trainer_state(python, osp.join(work, 'model_final.pth'), env)
    assert state['hooks']['WeightRescaleHook'] == dict(steps=4, num_rescales=2)
    _, out = _run(
        [python, tool, '--resume', '--config-file', cfg] + opts +
        ['train.max_iter=6', 'train.eval_period=100'],
        cwd=tmp_path,
        env=env)
    assert 'Starting training from iteration 4' in out, out[-3000:]
    assert 'WeightRescaleHook: resumed: rescaling the 69 weights' in out
    state = _trainer_state(python, osp.join(work, 'model_final.pth'), env)
    assert state['iteration'] == 5
    assert state['hooks']['WeightRescaleHook'] == dict(steps=6, num_rescales=3)
    assert _unit_rows(work)[0] < 1e-5


@in_d2_env
def test_yacs_train_net_tool_trains_and_evaluates_wrs(d2, tmp_path):
    python, _, _, src, _, env = d2
    tool = osp.join(src, 'tools', 'detectron2', 'train_net.py')
    work = str(tmp_path / 'work')
    _, out = _run(
        [python, tool, '--config-file',
         osp.join(src, YACS_WRS)] + YACS_CPU + [
             'SOLVER.MAX_ITER', '2', 'WRS.INTERVAL', '1', 'TEST.EVAL_PERIOD',
             '2', 'OUTPUT_DIR', work
         ],
        cwd=tmp_path,
        env=env)
    # FREEZE_AT 2: the stem and res2 do not train; the FPN and res3-5 do
    assert "to each weight's initial RMS row norm every 1 optimizer steps" \
        in out, out[-3000:]
    with open(osp.join(work, 'wrs_invariance.json')) as f:
        records = json.load(f)
    rescaled = [r['name'] for r in records if r['rescaled']]
    assert len(rescaled) == 50 and all(
        n.startswith('backbone.') for n in rescaled), rescaled
    assert 'Start inference on 3 batches' in out, out[-3000:]
    assert 'copypaste: Task: bbox' in out
    state = _trainer_state(python, osp.join(work, 'model_final.pth'), env)
    assert state['hooks']['WeightRescaleHook'] == dict(steps=2, num_rescales=2)


@in_d2_env
def test_detectron2_own_tools_train_the_twins_and_refuse_wrs(d2, tmp_path):
    """Detectron2's unmodified tools: the weight-decay twins train; its
    lazyconfig tool, which ignores train.hooks, stops the WRS config at the
    first forward with what to run instead."""
    python, _, _, src, vendor, env = d2
    lazy = osp.join(vendor, 'tools', 'lazyconfig_train_net.py')
    args = LAZY_CPU + LAZY_BN + ['train.max_iter=1', 'train.eval_period=0']
    cfg = shrunk_lazy(osp.join(src, LSJ_WD), str(tmp_path / 'wd.py'))
    _, out = _run(
        [python, lazy, '--config-file', cfg] + args +
        [f'train.output_dir={tmp_path}/wd'],
        cwd=tmp_path,
        env=env)
    assert osp.exists(tmp_path / 'wd' / 'model_final.pth'), out[-3000:]
    cfg = shrunk_lazy(osp.join(src, LSJ_WRS), str(tmp_path / 'wrs.py'))
    code, out = _run(
        [python, lazy, '--config-file', cfg] + args +
        [f'train.output_dir={tmp_path}/wrs'],
        cwd=tmp_path,
        env=env,
        ok=False)
    assert code != 0 and 'no WeightRescaleHook or ShiftedLpHook is ' \
        'registered' in out, out[-3000:]
    assert 'tools/detectron2/lazyconfig_train_net.py' in out
    _, out = _run(
        [
            python,
            osp.join(vendor, 'tools', 'train_net.py'), '--config-file',
            osp.join(src, YACS_WD)
        ] + YACS_CPU + [
            'SOLVER.MAX_ITER', '1', 'OUTPUT_DIR', f'{tmp_path}/yacs', 'TEST.'
            'EVAL_PERIOD', '0'
        ],
        cwd=tmp_path,
        env=env)
    assert osp.exists(tmp_path / 'yacs' / 'model_final.pth'), out[-3000:]
