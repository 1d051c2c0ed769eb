"""Every shipped config is built, trained for a few iterations on CPU on real
data (coco_tiny, or a VOC-format set made from it) and evaluated with its
real metric. A config without an entry in CONFIGS fails the suite."""
import os
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from wrs_mm.core.param_groups import ROLE, ROLE_SHIFTED
from wrs_mm.engine import WeightRescaleHook
from wrs_mm.testing import data_root, groups_by_name, repo_root
from wrs_mm.testing import small_scale as C

ROOT = repo_root()

# config -> (task, what it regularizes with)
CONFIGS = {
    'configs/yolov3/yolov3_d53-bn_wd_1xb8-ms-320-640-100e-cos_coco.py': ('det',
                                                                         'wd'),
    'configs/yolov3/yolov3_d53-bn_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py':
    ('det', 'wrs'),
    'configs/faster_rcnn/faster-rcnn_r50_fpn_gn-ws-all_wd_1x_coco.py': ('det',
                                                                        'wd'),
    'configs/faster_rcnn/faster-rcnn_r50_fpn_gn-ws-all_shifted-l2_1x_coco.py':
    ('det', 'shifted'),
    'configs/faster_rcnn/faster-rcnn_r50_fpn_gn-ws-all_wrs-tau10_1x_coco.py':
    ('det', 'wrs'),
    'configs/faster_rcnn/faster-rcnn_r50_fpn_syncbn-wrs-tau10_1x_coco.py':
    ('det', 'wrs'),
    'configs/cascade_rcnn/cascade-rcnn_r50_fpn_gn-ws-all_wd_20e_coco.py':
    ('det', 'wd'),
    'configs/cascade_rcnn/cascade-rcnn_r50_fpn_gn-ws-all_shifted-l2_20e_coco.py':  # noqa: E501
    ('det', 'shifted'),
    'configs/cascade_rcnn/cascade-rcnn_r50_fpn_gn-ws-all_wrs-tau10_20e_coco.py':  # noqa: E501
    ('det', 'wrs'),
    'configs/cascade_rcnn/cascade-rcnn_r50_fpn_ws-bn_shifted-l2_20e_coco.py':
    ('det', 'shifted'),
    'configs/cascade_rcnn/cascade-rcnn_r101_fpn_gn-ws-all_wd_20e_coco.py':
    ('det', 'wd'),
    'configs/cascade_rcnn/cascade-rcnn_r101_fpn_gn-ws-all_shifted-l2_20e_coco.py':  # noqa: E501
    ('det', 'shifted'),
    'configs/mask_rcnn/mask-rcnn_r50_fpn_gn-ws-all_wd_2x_coco.py': ('det',
                                                                    'wd'),
    'configs/mask_rcnn/mask-rcnn_r50_fpn_gn-ws-all_shifted-l2_2x_coco.py':
    ('det', 'shifted'),
    'configs/mask_rcnn/mask-rcnn_r50_fpn_gn-ws-all_wrs-tau10_2x_coco.py':
    ('det', 'wrs'),
    'configs/deeplabv3/deeplabv3_r101-d16_adamw-wd_2xb5-55k_voc12aug-512x512.py':  # noqa: E501
    ('seg', 'wd'),
    'configs/deeplabv3/deeplabv3_r101-d16_adamw-wrs-tau10_2xb5-55k_voc12aug-512x512.py':  # noqa: E501
    ('seg', 'wrs'),
}
CONFIGS.update({
    f'configs/counting/csrnet_vgg16bn_bayesian_{data}_{reg}.py': ('count', reg)
    for data in ('ucf-qnrf', 'shtech-a', 'shtech-b')
    for reg in ('wd', 'wrs')
})
CONFIGS.update({
    os.path.relpath(os.path.join(d, f), ROOT):
    ('cls', 'wrs' if '-wrs-' in f else 'shifted' if '-shifted-' in f else 'wd')
    for d, _, files in os.walk(
        os.path.join(ROOT, 'configs', 'classification')) if '_base_' not in d
    for f in files if f.endswith('.py')
})


def test_every_config_has_a_test():
    assert C.all_configs() == sorted(CONFIGS)


#: the configs without a weight-decay twin (the configs guide names them)
NO_TWIN = {
    'configs/faster_rcnn/faster-rcnn_r50_fpn_syncbn-wrs-tau10_1x_coco.py',
    'configs/cascade_rcnn/cascade-rcnn_r50_fpn_ws-bn_shifted-l2_20e_coco.py'
}


def test_every_regularized_config_has_its_weight_decay_twin_as_base():
    """What the configs guide says: a WRS or shifted-L2 config's ``_base_``
    is its weight-decay twin (``wd``, or ``l2`` for coupled L2), a config of
    the same folder,
    except the configs it names."""
    with open(os.path.join(ROOT, 'docs', 'en', 'user_guides',
                           'configs.md')) as f:
        guide = f.read()
    for config in C.all_configs():
        name = os.path.basename(config)
        if not any(k in name for k in ('wrs', 'shifted')):
            continue
        with open(os.path.join(ROOT, config)) as f:
            base = re.search(r"^_base_ = '([^']+)'", f.read(), re.M)
        twin = base and base.group(1).startswith('./') and re.search(
            r'[-_](wd|l2)[_.]', base.group(1)) and \
            os.path.isfile(os.path.join(ROOT, os.path.dirname(config),
                                        base.group(1)))
        if config in NO_TWIN:
            assert not twin and f'`{name}`' in guide, config
        else:
            assert twin, (config, base and base.group(1))


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    return C.make_voc_from_coco(str(tmp_path_factory.mktemp('voc')))


@pytest.mark.parametrize('config', [c for c in CONFIGS if 'r101' in c])
def test_shipped_r101_models_build(config):
    """The trained runs below use depth 50 for R-101 configs; the real
    R-101 model of each is built here."""
    from mmengine.registry import MODELS
    cfg = Config.fromfile(os.path.join(ROOT, config))
    init_default_scope(cfg.default_scope)
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert len(model.backbone.layer3) == 23  # ResNet-101


def test_shipped_wrn28_10_builds_at_full_size():
    """The trained runs below use width 1/4 for WRN-28-10."""
    from mmengine.registry import MODELS
    cfg = Config.fromfile(
        os.path.join(ROOT, 'configs', 'classification',
                     'wrn28-10-bn_sgdm-wd_1xb100-200e_cifar10.py'))
    model = MODELS.build(cfg.model)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 28  # 25 + 3 shortcut projections, each with a BN
    assert convs[-1].out_channels == 640
    assert 36.4e6 < sum(p.numel() for p in model.parameters()) < 36.6e6


@pytest.mark.parametrize('config', list(CONFIGS))
def test_config_trains_and_evaluates(config, tmp_path, request):
    task, reg = CONFIGS[config]
    cfg = Config.fromfile(os.path.join(ROOT, config))
    assert 'wrs_mm' in cfg.custom_imports['imports']
    if task == 'det':
        C.shrink_det(
            cfg,
            tmp_path,
            depth=50 if 'r101' in config else None,
            images=1,
            batch_size=1)
    elif task == 'seg':
        C.shrink_seg(cfg, tmp_path, request.getfixturevalue('voc_root'))
    elif task == 'cls':  # 3 epochs of 2 iterations on the CIFAR-10 subset
        # (SGD at the scaled lr 0.02 first raises the loss of a fresh BN net;
        # WRN-28-10 at width 1/4, built at full width below)
        C.shrink_cls(
            cfg,
            tmp_path,
            lr=2e-3 if '_sgdm-' in config else None,
            width=0.25 if 'wrn28-10' in config else None)
    else:  # the other real crowd photographs, 2 epochs of 4 iterations
        C.shrink_counting(
            cfg,
            tmp_path,
            data_root() + '/shanghaitech_b_subset',
            crop=64,
            epochs=2,
            images=16,
            test_long_side=128)
    runner, losses, metrics = C.train_and_test(cfg)

    assert all(map(lambda x: x == x and abs(x) < 1e6, losses))
    if task == 'count':  # random crops: compare the epochs' mean losses
        assert len(losses) == 8
        assert sum(losses[4:]) < sum(losses[:4]), losses
    elif task == 'cls':  # the same two batches each epoch: first vs last
        assert len(losses) == 6
        assert sum(losses[4:]) < sum(losses[:2]), losses
    else:
        assert len(losses) == 3 and losses[-1] < losses[0], losses
    ckpt = dict(
        det='epoch_3.pth',
        seg='iter_3.pth',
        count='epoch_2.pth',
        cls='epoch_3.pth')
    assert os.path.isfile(os.path.join(tmp_path, ckpt[task]))
    keys = {
        'det': ['coco/bbox_mAP', 'coco/bbox_mAP_50'],
        'seg': ['mIoU', 'aAcc'],
        'count': ['mae', 'mse'],
        'cls': ['accuracy/top1']
    }[task]
    if 'mask-rcnn' in config:
        keys.append('coco/segm_mAP')
    assert all(k in metrics for k in keys), metrics

    groups = groups_by_name(runner.optim_wrapper, runner.model)
    roles = [g.get(ROLE) for g in groups.values()]
    hooks = [h for h in runner.hooks if isinstance(h, WeightRescaleHook)]
    if reg == 'wrs':
        hook, = hooks
        assert hook.rescaler is not None and len(hook.rescaler) > 0
        # tau=3 in the test over 3 steps (6 for classification); tau=1
        # (kept) for counting
        assert hook.num_rescales == dict(count=8, cls=2).get(task, 1)
        params = dict(runner.model.named_parameters())
        for e in hook.rescaler.pack.entries:  # last step was a rescale
            norms = params[e.name].detach().reshape(e.rows, -1).norm(dim=1)
            target = hook.rescaler.targets[e.name]  # 1, or 'init' measured
            assert torch.allclose(
                norms, torch.full_like(norms, target), rtol=1e-4), e.name
            assert groups[e.name]['weight_decay'] == 0
        if 'syncbn' in config:  # frozen_stages=1: layer2-4 only, to 'init'
            names = {e.name for e in hook.rescaler.pack.entries}
            assert len(names) == 42 and all(
                n.startswith(('backbone.layer2', 'backbone.layer3',
                              'backbone.layer4')) for n in names), names
            assert len(set(hook.rescaler.targets.values())) > 1
        assert os.path.isfile(os.path.join(tmp_path, 'wrs_invariance.json'))
    elif reg == 'shifted':
        shifted = [g for g in groups.values() if g.get(ROLE) == ROLE_SHIFTED]
        assert shifted and all(g['weight_decay'] == 0 for g in shifted)
        assert all(g['params'][0].dim() == 4 for g in shifted)  # WS convs
        assert not hooks
    else:
        assert not hooks and not any(roles)
        assert next(iter(groups.values()))['weight_decay'] > 0
