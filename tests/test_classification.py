"""Classification (Liu et al. 2021 Table 1 stack): training through
tools/train.py with WRS on the shipped CIFAR-10 subset, both data-set
layouts, accuracy against dumped predictions, bad folders, and the study's
smoke mode."""
import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from wrs_mm.classification import (Accuracy, CIFARDataset, ImageClassifier,
                                   ImageFolderDataset)
from wrs_mm.image_io import read_image
from wrs_mm.testing import cifar_study, repo_root
from wrs_mm.testing import small_scale as C

ROOT = repo_root()
WRS_CFG = os.path.join(ROOT, 'configs', 'classification',
                       'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py')


def _tool(name, *args, cwd=None):
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    res = subprocess.run(
        [sys.executable,
         os.path.join(ROOT, 'tools', name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The VGG16-BN AdamW WRS config at width 1/8 trained through
    tools/train.py for 2 epochs of 20 iterations on 200 subset images, tau
    5 (the last step is a rescale)."""
    work = tmp_path_factory.mktemp('cls_wrs')
    cfg = Config.fromfile(WRS_CFG)
    C.shrink_cls(
        cfg,
        work,
        images=(200, 100),
        epochs=2,
        batch_size=10,
        width=0.125,
        augment=True)
    cfg.custom_hooks[0].interval = 5
    cfg.optim_wrapper.optimizer.lr = 3e-3
    path = str(work / 'cfg.py')
    cfg.dump(path)
    _tool('train.py', path)
    return cfg, work


def _losses(work):
    run, = [d for d in os.listdir(work) if os.path.isdir(work / d)]
    with open(work / run / 'vis_data' / 'scalars.json') as f:
        return [json.loads(x)['loss'] for x in f if '"loss"' in x]


def test_classifier_trains_with_wrs_through_train_py(trained):
    cfg, work = trained
    losses = _losses(work)
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.05, losses
    ckpt = torch.load(work / 'epoch_2.pth', weights_only=False)
    state = ckpt['state_dict']
    convs = [
        k for k in state if k.startswith('backbone') and k.endswith('weight')
        and state[k].dim() == 4
    ]
    assert len(convs) == 13  # VGG16: every conv is followed by BN
    for k in convs:  # the last step was a rescale: unit channel norms
        norms = state[k].flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4), k
    assert not torch.allclose(state['fc.weight'].norm(dim=1),
                              torch.ones(10))  # not invariant: not rescaled
    with open(work / 'wrs_invariance.json') as f:
        table = json.load(f)
    rescaled = {r['name'] for r in table if r['rescaled']}
    assert rescaled == set(convs)
    decay = {
        g['weight_decay']
        for g in ckpt['optimizer']['param_groups']
        if g.get('wrs_mm_role') == 'wrs'
    }
    assert decay == {0.}


def test_accuracy_equals_recomputation_from_dumped_predictions(
        trained, tmp_path):
    cfg, work = trained
    out = str(tmp_path / 'preds.pkl')
    res = _tool('test.py', str(work / 'cfg.py'), str(work / 'epoch_2.pth'),
                '--out', out, '--work-dir', str(tmp_path))
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 100
    hits = [int(p['pred_label']) == int(p['gt_label']) for p in preds]
    labels = {int(p['gt_label']) for p in preds}
    assert labels == set(range(10))  # the subset spans every class
    expected = 100. * sum(hits) / len(hits)
    logged = [
        float(line.split('accuracy/top1: ')[1].split()[0])
        for line in (res.stdout + res.stderr).splitlines()
        if 'accuracy/top1: ' in line
    ]
    assert logged and abs(logged[-1] - expected) < 1e-2, (logged, expected)


def test_accuracy_topk_and_tags():
    m = Accuracy(topk=(1, 2), tag='val')
    scores = torch.tensor([[.1, .7, .2], [.5, .3, .2], [.2, .3, .5],
                           [.6, .2, .2]])
    samples = [
        dict(pred_score=s, gt_label=torch.tensor(g), tag=t)
        for s, g, t in zip(scores, [1, 1, 0, 0], ['val', 'val', 'val', 'x'])
    ]
    m.process(None, samples)
    # val: hit (top1), 2nd (top2), 3rd (miss)
    assert m.compute_metrics(m.results) == dict(top1=100 / 3, top2=200 / 3)
    with pytest.raises(ValueError, match='topk'):
        Accuracy(topk=0)
    empty = Accuracy(tag='nothing')
    empty.process(None, samples)
    with pytest.raises(ValueError, match="tag 'nothing'"):
        empty.compute_metrics(empty.results)


def _write_cifar(root, name, n_classes, label_key, names_key, files, seed):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    rng = np.random.RandomState(seed)
    classes = [f'c{i}' for i in range(n_classes)]
    meta = 'batches.meta' if 'batches' in name else 'meta'
    with open(os.path.join(folder, meta), 'wb') as f:
        pickle.dump({names_key: [c.encode() for c in classes]}, f)
    made = {}
    for fname in files:
        data = rng.randint(0, 256, (2 * n_classes, 3072), dtype=np.uint8)
        labels = [i % n_classes for i in range(2 * n_classes)]
        with open(os.path.join(folder, fname), 'wb') as f:
            pickle.dump({b'data': data, label_key: labels}, f)
        made[fname] = (data, labels)
    return made


def _items(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def test_cifar_binary_layouts(tmp_path):
    c10 = _write_cifar(
        str(tmp_path), 'cifar-10-batches-py', 10, b'labels', b'label_names',
        [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch'], 0)
    c100 = _write_cifar(
        str(tmp_path), 'cifar-100-python', 100, b'fine_labels',
        b'fine_label_names', ['train', 'test'], 1)
    ds = CIFARDataset(str(tmp_path / 'cifar-10-batches-py'), split='test')
    assert len(ds) == 20 and ds.metainfo['classes'][3] == 'c3'
    data, labels = c10['test_batch']
    for i in range(len(ds)):
        item = ds[i]
        j = int(item['img_path'].rsplit('#', 1)[1])
        assert item['gt_label'] == labels[j]
        assert np.array_equal(item['img'],
                              data[j].reshape(3, 32, 32).transpose(1, 2, 0))
    train = CIFARDataset(str(tmp_path), split='train')  # parent folder
    assert len(train) == 100 and train.metainfo['classes'][-1] == 'c9'
    # the holdout split: the last 2 images of each class
    held = CIFARDataset(
        str(tmp_path),
        split='train',
        holdout_per_class=2,
        holdout=True,
        tag='val')
    rest = CIFARDataset(str(tmp_path), split='train', holdout_per_class=2)
    assert len(held) == 20 and len(rest) == 80
    held_items, rest_items = _items(held), _items(rest)
    assert not {d['img_path']
                for d in held_items} & {d['img_path']
                                        for d in rest_items}
    assert all(d['tag'] == 'val' for d in held_items)
    assert all('tag' not in d for d in rest_items)
    for c in range(10):  # each class's last two: both in the last batch
        idx = [
            int(d['img_path'].rsplit('#')[1]) for d in held_items
            if d['gt_label'] == c and 'data_batch_5' in d['img_path']
        ]
        assert idx == [c, c + 10], (c, idx)
    # CIFAR-100's fine labels; only one layout in a folder is looked at
    shutil.rmtree(tmp_path / 'cifar-10-batches-py')
    ds100 = CIFARDataset(str(tmp_path), split='train')
    assert len(ds100) == 200 and len(ds100.metainfo['classes']) == 100
    assert [d['gt_label'] for d in _items(ds100)] == sorted(c100['train'][1])
    with pytest.raises(ValueError, match="'train' or 'test'"):
        CIFARDataset(str(tmp_path), split='val')
    with pytest.raises(FileNotFoundError, match='cifar-10-batches-py'):
        CIFARDataset(str(tmp_path / 'nothing'))


def test_study_scale_reads_either_layout_and_names_missing_data(
        tmp_path, monkeypatch):
    """The CIFAR studies' scale from what --data-root holds: class folders
    or CIFAR-10's own batches; --smoke fits the shipped sample; a full study
    on too few images, or a folder with neither layout, says which data it
    needs and how to get it."""
    monkeypatch.delenv('WRS_MM_DATA', raising=False)
    args = argparse.Namespace(
        data_root=None, width=0.125, epochs=1, holdout=200, smoke=True)
    cfg = cifar_study.scale(Config.fromfile(WRS_CFG), args)
    train = cfg.train_dataloader.dataset
    val, test = cfg.val_dataloader.dataset.datasets
    sizes = C.class_sizes('train')
    assert train.type == 'ImageFolderDataset'
    assert train.holdout_per_class == val.holdout_per_class == min(sizes) // 5
    assert len(train.indices) == min(cifar_study.SMOKE_IMAGES[0],
                                     sum(sizes) - 10 * (min(sizes) // 5))
    assert len(test.indices) == min(cifar_study.SMOKE_IMAGES[1],
                                    sum(C.class_sizes('test')))

    _write_cifar(
        str(tmp_path), 'cifar-10-batches-py', 10, b'labels', b'label_names',
        [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch'], 0)
    args.data_root = str(tmp_path)
    cfg = cifar_study.scale(Config.fromfile(WRS_CFG), args)
    train = cfg.train_dataloader.dataset
    assert (train.type, train.data_root, train.split) == \
        ('CIFARDataset', str(tmp_path), 'train')
    assert train.holdout_per_class == 2 and train.indices == list(range(80))
    args.smoke = False
    with pytest.raises(SystemExit) as e:
        cifar_study.scale(Config.fromfile(WRS_CFG), args)
    assert '10 training images a class; the study needs 2000 or more' in \
        str(e.value) and 'download_data.py cifar10' in str(e.value)
    args.data_root = str(tmp_path / 'nothing')
    with pytest.raises(FileNotFoundError, match='holds neither'):
        cifar_study.scale(Config.fromfile(WRS_CFG), args)


def test_image_folder_reads_the_subset_and_packs_rgb():
    root = C.cifar_subset_root()
    last = sum(C.class_sizes('test')) - 1
    ds = ImageFolderDataset(
        root,
        'test',
        indices=[0, 1, last],
        pipeline=[dict(type='LoadClsImage'),
                  dict(type='PackClsInputs')])
    assert ds.metainfo['classes'][:2] == ('airplane', 'automobile')
    item = ds[2]
    assert item['data_samples'].gt_label.item() == 9
    path = item['data_samples'].img_path
    n = C.class_sizes('test')[-1]
    assert path.endswith(os.path.join('test', 'truck', f'{n - 1:04d}.jpg'))
    assert ds[1]['data_samples'].img_path.endswith(
        os.path.join('test', 'airplane', '0001.jpg'))
    rgb = read_image(path, 'rgb')
    assert torch.equal(item['inputs'],
                       torch.from_numpy(rgb.transpose(2, 0, 1).copy()))


def test_bad_class_folders_name_the_culprit(tmp_path):
    src = C.cifar_subset_root()
    for c in ('cat', 'dog'):
        os.makedirs(tmp_path / 'train' / c)
    shutil.copy(
        os.path.join(src, 'train', 'cat', '0000.jpg'),
        tmp_path / 'train' / 'cat')
    with pytest.raises(FileNotFoundError, match='dog holds no image'):
        ImageFolderDataset(str(tmp_path))
    with open(tmp_path / 'train' / 'dog' / '0000.jpg', 'wb') as f:
        f.write(b'not a jpeg')
    ds = ImageFolderDataset(
        str(tmp_path), pipeline=[dict(type='LoadClsImage')])
    assert ds[0]['img'].shape == (32, 32, 3)
    with pytest.raises(ValueError, match=r'dog[/\\]0000\.jpg'):
        ds[1]
    with pytest.raises(FileNotFoundError, match='class folder not found'):
        ImageFolderDataset(
            str(tmp_path), metainfo=dict(classes=('cat', 'bird')))
    with pytest.raises(ValueError, match='holdout_per_class'):
        ImageFolderDataset(str(tmp_path), holdout=True)


def test_backbones_put_bn_after_every_conv():
    from wrs_mm.core import analyze_invariance
    for backbone, convs in ((dict(type='VGGBN', arch='vgg16'),
                             13), (dict(type='ResNetBN', arch='resnet18'), 20),
                            (dict(type='ResNetBN', arch='wrn28-10'), 28)):
        model = ImageClassifier(dict(backbone, width=0.125), 10).train()
        x = torch.randn(4, 3, 32, 32)
        report = analyze_invariance(model, lambda: model(x).square().mean())
        names = [v.name for v in report.invariant()]
        assert len(names) == convs, (backbone, names)
        assert all(n.startswith('backbone.') for n in names)
    with pytest.raises(KeyError, match='vgg16'):
        ImageClassifier(dict(type='VGGBN', arch='vgg19'), 10)


def _study(*args):
    res = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'benchmarks', 'study_cifar10.py'), '--smoke',
        '--seeds', '2', '--epochs', '1', '--optimizers', 'adamw', *args
    ],
                         capture_output=True,
                         text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.mark.heavy
def test_study_smoke(tmp_path):
    """The study's smoke mode end to end through the paired-study runner
    (AdamW: tau chosen on the validation split, every arm), then again with
    the first result as --previous: seed 1 of wd and wrs_init is reused,
    not retrained, and the retrained seed 0 reproduces the first run
    exactly."""
    out = tmp_path / 'study.json'
    runs = str(tmp_path / 'runs')
    res = _study('--arms', 'wd', 'wrs', 'wrs_init', 'wrs_fc', 'shifted',
                 '--max-seeds', 'wrs=1', 'wrs_fc=1', 'shifted=1', '--work-dir',
                 runs, '--out', str(out))
    study = json.loads(out.read_text())
    taus = study['tau_selection_val']['adamw']
    assert int(max(taus, key=taus.get)) == study['best_tau']['adamw']
    tau = study['best_tau']['adamw']
    summary = study['summary']['adamw']
    assert summary['baseline'] == 'adamw_wd'
    arms = summary['arms']
    assert {
        k: a['n']
        for k, a in arms.items()
    } == {
        'adamw_wd': 2,
        f'adamw_wrs_tau{tau}': 1,
        'adamw_wrs_init': 2,
        'adamw_wrs_fc': 1,
        'adamw_shifted': 1
    }
    for name, a in arms.items():
        if a['vs_baseline'] is None:
            continue
        seeds = a['vs_baseline']['seeds']
        diffs = [
            a['values'][str(s)] - arms['adamw_wd']['values'][str(s)]
            for s in seeds
        ]
        assert a['vs_baseline']['diffs'] == pytest.approx(diffs)
    by_run = {(r['arm'], r['seed']): r for r in study['runs']}
    assert by_run[('wrs_init', 1)]['tau'] == tau
    # what each arm configured reached the hook: WS targets, the fc
    for arm, want in (('wrs_init', 'init'), ('wrs_fc', 1.0)):
        cfg = Config.fromfile(os.path.join(runs, 'configs', f'adamw_{arm}.py'))
        hook = cfg.custom_hooks[0]
        assert hook.get('target_norm', 1.0) == want and hook.interval == tau
    with open(
            os.path.join(runs, 'adamw_wrs_fc', 'seed0',
                         'wrs_invariance.json')) as f:
        fc = {r['name']: r for r in json.load(f)}['fc.weight']
    assert fc['rescaled'] and fc['kind'] == 'none'
    assert fc['reason'].startswith('FORCED')
    with open(
            os.path.join(runs, 'adamw_wrs_init', 'seed0',
                         'wrs_invariance.json')) as f:
        targets = [r['target_norm'] for r in json.load(f) if r['rescaled']]
    assert len(targets) == 13 and all(0.2 < t < 0.9 for t in targets)
    for suffix in ('_adamw_curves.png', '_norms.png'):
        assert os.path.getsize(str(out)[:-5] + suffix) > 10000
    assert '| adamw_wrs_init | 2 |' in res.stdout

    # reuse: seed 1 of both arms from the first result, not retrained;
    # seed 0 retrained elsewhere, bitwise equal
    out2 = tmp_path / 'again.json'
    res = _study('--arms', 'wd', 'wrs_init', '--tau', f'adamw={tau}',
                 '--max-seeds', 'wd=1', 'wrs_init=1', '--previous', str(out),
                 '--work-dir', str(tmp_path / 'runs2'), '--out', str(out2))
    again = json.loads(out2.read_text())
    assert again['summary']['adamw']['reproduced'] == {
        'adamw_wd_seed0': 0.,
        'adamw_wrs_init_seed0': 0.
    }
    assert not os.path.isdir(tmp_path / 'runs2' / 'adamw_wd' / 'seed1')
    wd = again['summary']['adamw']['arms']['adamw_wd']['values']
    assert wd == arms['adamw_wd']['values']
    reused = {(r['arm'], r['seed']): r['reused'] for r in again['runs']}
    assert reused[('wd', 1)] and not reused[('wd', 0)]
    assert reused[('wrs_init', 1)] and not reused[('wrs_init', 0)]


@pytest.mark.heavy
def test_ws_study_smoke(tmp_path):
    """study_ws_shifted.py's smoke mode: L2 against the eps-shifted L2 on the
    weight-standardised VGG16-BN, one lambda on two seeds, through the
    paired-study runner: each arm's config is the shipped one with the
    study's optimizer, the paired summary holds the runs' own final values,
    each run's extremes are those of its curves, and the tables and the
    figure are written."""
    out = tmp_path / 'ws.json'
    res = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'benchmarks', 'study_ws_shifted.py'), '--smoke',
        '--epochs', '1', '--lambdas', 'sgdm=5e-2', '--decisive', 'sgdm=5e-2',
        '--decisive-seeds', '2', '--work-dir',
        str(tmp_path / 'runs'), '--out',
        str(out)
    ],
                         capture_output=True,
                         text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = json.loads(out.read_text())
    paired = study['paired']['sgdm_lam0.05']
    assert paired['baseline'] == 'sgdm_l2_lam0.05'
    assert {
        k: a['n']
        for k, a in paired['arms'].items()
    } == {
        'sgdm_l2_lam0.05': 2,
        'sgdm_shifted_lam0.05': 2
    }
    for reg in ('l2', 'shifted'):
        cfg = Config.fromfile(
            str(tmp_path / 'runs' / 'configs' / f'sgdm_{reg}_lam0.05.py'))
        assert cfg.model.backbone.conv_cfg == dict(type='ConvWS')
        assert cfg.optim_wrapper.optimizer == dict(
            type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-2)
        shifted = cfg.optim_wrapper.get('paramwise_cfg', {}).get('shifted_reg')
        assert (shifted.eps if reg == 'shifted' else shifted) == \
            (1e-3 if reg == 'shifted' else None)
    assert len(study['runs']) == 4
    for r in study['runs']:
        values = paired['arms'][f"sgdm_{r['reg']}_lam0.05"]['values']
        assert r['test_top1'] == values[str(r['seed'])]
        assert r['std_min'] == min(r['std_min_curve']) > 0
        assert r['eff_lr_max'] == max(r['eff_lr_curve'])
        assert r['failed'] == (r['non_finite_loss'] or r['test_top1'] < 15)
    table = (tmp_path / 'ws.md').read_text().splitlines()
    assert [line.split(' | ')[2] for line in table[2:]] == ['l2', 'shifted']
    assert os.path.getsize(tmp_path / 'ws_fig6.png') > 10000
    assert '| sgdm_shifted_lam0.05 | 2 |' in res.stdout
