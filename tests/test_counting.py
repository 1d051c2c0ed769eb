"""Crowd counting on real data: the WRS config trained on the real
ShanghaiTech B subset, data loaders (ShanghaiTech and UCF-QNRF layouts) and
the pipeline invariants."""
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio
import torch
from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.registry import DATASETS, TRANSFORMS
from mmengine.runner import Runner

from wrs_mm.engine import WeightRescaleHook
from wrs_mm.testing import data_root, get_hook, repo_root
from wrs_mm.testing import small_scale as C
import toy

ROOT = repo_root()
SHB = os.path.join(data_root(), 'shanghaitech_b_subset')
WRS = 'configs/counting/csrnet_vgg16bn_bayesian_ucf-qnrf_wrs.py'


@pytest.mark.heavy
def test_wrs_config_trains_on_shanghaitech_b_and_metric_is_exact(tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, WRS))
    C.shrink_counting(cfg, tmp_path, SHB, crop=96, epochs=2, images=16)
    cfg.train_cfg.val_interval = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    best = [f for f in os.listdir(tmp_path) if f.startswith('best_mae_')]
    assert len(best) == 1, os.listdir(tmp_path)  # save_best='mae', 'less'
    maes = runner.message_hub.get_scalar('val/mae').data[0]
    assert len(maes) == 2
    assert best[0] == f'best_mae_epoch_{int(np.argmin(maes)) + 1}.pth'

    losses = runner.message_hub.get_scalar('train/loss').data[0]
    per_epoch = len(losses) // 2
    assert per_epoch == 4  # 16 images, batch 4
    assert np.isfinite(losses).all()
    assert np.mean(losses[-per_epoch:]) < np.mean(losses[:per_epoch])

    hook = get_hook(runner, WeightRescaleHook)
    assert len(hook.rescaler) == 16  # 10 front-end + 6 back-end BN convs
    assert hook.num_rescales == hook.steps == 8  # tau = 1
    params = dict(runner.model.named_parameters())
    w = params['backend.0.weight'].detach().flatten(1).norm(dim=1)
    assert torch.allclose(w, torch.ones_like(w), atol=1e-4)
    assert 'output_layer.weight' not in [
        e.name for e in hook.rescaler.pack.entries
    ]

    dump = str(tmp_path / 'preds.pkl')
    runner.test_evaluator.metrics.append(DumpResults(out_file_path=dump))
    metrics = runner.test()
    with open(dump, 'rb') as f:
        preds = pickle.load(f)
    ds = DATASETS.build(
        dict(type='ShanghaiTechDataset', data_root=SHB, split='test_data'))
    assert len(preds) == len(ds) > 1  # every test image, once
    err = np.array(
        [float(p['pred_count']) - float(p['gt_count']) for p in preds])
    gts = [float(p['gt_count']) for p in preds]
    # gt counts are the real annotations of the whole test images
    assert gts == [float(len(ds[i]['points'])) for i in range(len(ds))]
    assert np.isfinite([metrics['mae'], metrics['mse']]).all()
    assert metrics['mae'] == pytest.approx(np.abs(err).mean(), rel=1e-6)
    assert metrics['mse'] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-6)
    # the same evaluation on 2 processes (gloo): every image counted once
    cfg.dump(str(tmp_path / 'cfg.py'))
    ckpt = str(tmp_path / 'epoch_2.pth')
    dist_dump = str(tmp_path / 'dist_preds.pkl')
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PORT=str(toy.free_port()),
        CUDA_VISIBLE_DEVICES='',  # 2 processes on CPU / gloo
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    subprocess.run([
        'bash', 'tools/dist_test.sh',
        str(tmp_path / 'cfg.py'), ckpt, '2', '--work-dir',
        str(tmp_path / 'dist'), '--out', dist_dump
    ],
                   check=True,
                   cwd=ROOT,
                   env=env,
                   timeout=300,
                   stdout=subprocess.DEVNULL)
    with open(dist_dump, 'rb') as f:
        dist = {p['img_path']: float(p['pred_count']) for p in pickle.load(f)}
    assert sorted(dist) == sorted(p['img_path'] for p in preds)
    for p in preds:
        assert dist[p['img_path']] == pytest.approx(
            float(p['pred_count']), rel=1e-4)
    d = preds[0]['pred_density']
    assert d.shape == (-(-240 // 8), 320 // 8)  # 1024x768 -> 320x240, /8
    assert float(d.sum()) == pytest.approx(
        float(preds[0]['pred_count']), rel=1e-5)


def _to_qnrf(src, dst):
    """Rewrite a ShanghaiTech-layout set into the UCF-QNRF layout."""
    for split, qsplit in (('train_data', 'Train'), ('test_data', 'Test')):
        os.makedirs(os.path.join(dst, qsplit))
        names = sorted(
            os.listdir(os.path.join(src, split, 'images')),
            key=lambda f: int(f[4:-4]))
        for i, name in enumerate(names, 1):
            shutil.copy(
                os.path.join(src, split, 'images', name),
                os.path.join(dst, qsplit, f'img_{i:04d}.jpg'))
            m = sio.loadmat(
                os.path.join(src, split, 'ground-truth',
                             'GT_' + name[:-4] + '.mat'))
            sio.savemat(
                os.path.join(dst, qsplit, f'img_{i:04d}_ann.mat'),
                dict(annPoints=m['image_info'][0, 0][0, 0][0]))


def test_ucf_qnrf_loader_reads_the_same_points(tmp_path):
    _to_qnrf(SHB, str(tmp_path))
    sh = DATASETS.build(
        dict(type='ShanghaiTechDataset', data_root=SHB, split='train_data'))
    qn = DATASETS.build(
        dict(type='UCFQNRFDataset', data_root=str(tmp_path), split='Train'))
    assert len(sh) == len(qn) == len(
        os.listdir(os.path.join(SHB, 'train_data', 'images')))
    for i in range(len(sh)):
        assert np.array_equal(sh[i]['points'], qn[i]['points'])
        assert os.path.basename(qn[i]['img_path']) == f'img_{i + 1:04d}.jpg'


def test_missing_or_corrupt_annotation_names_the_file(tmp_path):
    _to_qnrf(SHB, str(tmp_path))
    bad = tmp_path / 'Test' / 'img_0003_ann.mat'
    bad.write_bytes(b'not a mat file')
    with pytest.raises(ValueError, match='img_0003_ann.mat'):
        DATASETS.build(
            dict(type='UCFQNRFDataset', data_root=str(tmp_path), split='Test'))
    os.remove(bad)
    with pytest.raises(FileNotFoundError, match='img_0003_ann.mat'):
        DATASETS.build(
            dict(type='UCFQNRFDataset', data_root=str(tmp_path), split='Test'))


def test_image_folder_without_matching_names_names_folder_and_pattern(
        tmp_path):
    """``IMG_33.JPG`` does not match ``IMG_N.jpg``: the error says which
    folder and which pattern, not mmengine's "need at least one array"."""
    images = tmp_path / 'train_data' / 'images'
    images.mkdir(parents=True)
    shutil.copy(
        os.path.join(SHB, 'train_data', 'images', 'IMG_1.jpg'),
        images / 'IMG_33.JPG')
    with pytest.raises(FileNotFoundError) as e:
        DATASETS.build(
            dict(
                type='ShanghaiTechDataset',
                data_root=str(tmp_path),
                split='train_data'))
    msg = str(e.value)
    assert str(images) in msg and r'IMG_(\d+)\.jpg' in msg \
        and 'IMG_33.JPG' in msg, msg


def test_truncated_image_says_it_could_not_be_decoded(tmp_path):
    src = os.path.join(SHB, 'train_data', 'images', 'IMG_1.jpg')
    data = open(src, 'rb').read()
    cut = tmp_path / 'IMG_1.jpg'
    cut.write_bytes(data[:200])  # the header only
    load = TRANSFORMS.build(dict(type='LoadCrowdImage'))
    with pytest.raises(ValueError, match='could not be decoded') as e:
        load(dict(img_path=str(cut), points=np.zeros((0, 2), np.float32)))
    assert str(cut) in str(e.value)
    with pytest.raises(FileNotFoundError, match='image file not found'):
        load(dict(img_path=str(tmp_path / 'missing.jpg')))


def _sample(i=0):
    ds = DATASETS.build(
        dict(type='ShanghaiTechDataset', data_root=SHB, split='train_data'))
    return TRANSFORMS.build(dict(type='LoadCrowdImage'))(ds[i])


def test_pipeline_invariants():
    np.random.seed(0)
    res = _sample(3)
    n, w = len(res['points']), res['img'].shape[1]
    flip = TRANSFORMS.build(dict(type='RandomFlipCrowd', prob=1.))
    out = flip(dict(res, points=res['points'].copy()))
    assert len(out['points']) == n
    assert np.allclose(out['points'][:, 0], w - res['points'][:, 0])
    # a head's pixel moves with the flip
    x, y = res['points'][0].astype(int)
    assert np.array_equal(out['img'][y, w - 1 - x], res['img'][y, x])

    resize = TRANSFORMS.build(dict(type='ResizeCrowd', max_long=512))
    small = resize(dict(res, points=res['points'].copy()))
    assert max(small['img'].shape[:2]) == 512 and len(small['points']) == n
    assert np.allclose(small['points'], res['points'] * 0.5, atol=1e-3)

    crop = TRANSFORMS.build(dict(type='RandomCropCrowd', size=256))
    total = 0
    for _ in range(20):
        c = crop(dict(res, points=res['points'].copy()))
        p = c['points']
        assert c['img'].shape[:2] == (256, 256)
        assert ((p >= 0) & (p < 256)).all()
        assert c['gt_count'] == len(p) <= n
        total += len(p)
    assert 0 < total < 20 * n


def test_tiled_prediction_covers_the_image():
    from wrs_mm.counting import CSRNet
    torch.manual_seed(0)
    model = CSRNet(test_tile=64).eval()
    x = torch.randn(1, 3, 120, 200)  # not a multiple of the tile
    with torch.no_grad():
        whole_pad = model._predict_density(x)
    assert whole_pad.shape == (1, 1, 16, 32)  # padded to 128 x 256
    with pytest.raises(ValueError, match='test_tile'):
        CSRNet(test_tile=60)


def test_frontend_loads_vgg16_bn_layout_through_init_cfg(tmp_path):
    """A checkpoint in torchvision's vgg16_bn key layout (features.N for the
    13 convs, their BNs, plus the classifier) loads into the front end via
    the config's init_cfg mechanism."""
    from wrs_mm.counting import CSRNet
    torch.manual_seed(1)
    src = CSRNet().frontend.state_dict()
    ckpt = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in src.items()
    }
    assert ckpt['features.30.weight'].shape == (512, 512, 3, 3)  # conv 10
    assert 'features.31.running_var' in ckpt  # its BatchNorm
    ckpt['classifier.0.weight'] = torch.randn(4, 4)  # not in the front end
    path = str(tmp_path / 'vgg16_bn.pth')
    torch.save(ckpt, path)
    model = CSRNet(frontend_init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    got = model.frontend.state_dict()
    for k in src:
        assert torch.equal(got[k], ckpt[k]), k
