"""Run inside the Detectron2 environment (``tests/test_detectron2.py`` runs
this file there with pytest, with wrs_mm installed from its wheel and no
OpenMMLab package): the analysis on Detectron2's own layers and models, the
optimizer parameters, and the hooks on Detectron2's trainers (real steps
only, EventStorage scalars, checkpoint state, DDP through ``launch``)."""
import math
import os
import subprocess
import sys

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import instantiate
from detectron2.engine import SimpleTrainer, launch
from detectron2.layers import Conv2d, FrozenBatchNorm2d, get_norm
from detectron2.solver import get_default_optimizer_params
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils import comm
from detectron2.utils.events import EventStorage
from torch import nn
from torch.nn import functional as F

from wrs_mm.core import analyze_invariance, verify_invariance
from wrs_mm.core.param_groups import ROLE, ROLE_SHIFTED, ROLE_WRS
from wrs_mm.detectron2 import (NormDynamicsHook, ShiftedLpHook,
                               WeightRescaleHook, get_wrs_optimizer_params)


def test_the_adapter_imports_without_mmengine():
    code = ('import sys, wrs_mm.detectron2; '
            "assert 'mmengine' not in sys.modules; "
            "assert 'site-packages' in wrs_mm.detectron2.__file__; "
            'import importlib.util as u; '
            "assert u.find_spec('mmengine') is None")
    subprocess.run([sys.executable, '-c', code], check=True)


#: channels of the toy layers (Detectron2's GN has 32 groups)
C = 64


class Layers(nn.Module):
    """Detectron2's ``Conv2d(norm=...)`` with each norm it builds."""

    def __init__(self,
                 norms=('BN', 'SyncBN', 'FrozenBN', 'GN', 'naiveSyncBN')):
        super().__init__()
        self.names = norms
        c = 3
        for i, norm in enumerate(norms):
            conv = Conv2d(
                c,
                C,
                3,
                padding=1,
                bias=False,
                norm=get_norm(norm, C),
                activation=F.relu)
            self.add_module(f'c{i}', conv)
            c = C
        self.head = nn.Linear(C, 5)

    def forward(self, x):
        for i in range(len(self.names)):
            x = getattr(self, f'c{i}')(x)
        return self.head(x.mean((2, 3)))


def _loss(model, x, t):
    return lambda: F.cross_entropy(model(x), t)


def test_detectron2_conv_with_each_norm():
    """BN, SyncBN on one process and NaiveSyncBatchNorm: per channel; GN:
    per group; FrozenBN: refused, named. verify_invariance agrees."""
    torch.manual_seed(0)
    norms = ('BN', 'FrozenBN', 'GN', 'naiveSyncBN')
    m = Layers(norms).train()
    x, t = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    r = analyze_invariance(m, _loss(m, x, t))
    assert (r['c0.weight'].kind, r['c0.weight'].rows) == ('channel', C)
    assert r['c1.weight'].kind == 'none'
    assert "FrozenBatchNorm2d 'c1.norm'" in r['c1.weight'].reason
    assert (r['c2.weight'].kind, r['c2.weight'].rows) == ('group', 32)
    assert (r['c3.weight'].kind, r['c3.weight'].rows) == ('channel', C)
    assert isinstance(m.c1.norm, FrozenBatchNorm2d)
    result = verify_invariance(m, _loss(m, x, t), r)
    assert result.ok, result.failures
    assert result.outcomes['c0.weight'] == 'invariant'
    assert result.outcomes['c3.weight'] == 'invariant'
    assert result.outcomes['c1.weight'] == 'not invariant'


def test_torch_sync_batchnorm_on_one_process():
    """Detectron2's 'SyncBN' (torch's SyncBatchNorm) on one CPU process:
    torch 2.1 runs it as BatchNorm, and it is invariant per channel."""
    torch.manual_seed(0)
    m = Layers(('SyncBN', )).train()
    x, t = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    r = analyze_invariance(m, _loss(m, x, t))
    assert type(m.c0.norm).__name__ == 'SyncBatchNorm'
    assert (r['c0.weight'].kind, r['c0.weight'].rows) == ('channel', C)
    assert verify_invariance(m, _loss(m, x, t), r).ok


def lsj_mask_rcnn():
    """Detectron2's new_baselines Mask R-CNN, SyncBN set to BN (one CPU
    process)."""
    cfg = model_zoo.get_config('new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py')
    cfg.model.backbone.bottom_up.stem.norm = 'BN'
    cfg.model.backbone.bottom_up.stages.norm = 'BN'
    cfg.model.backbone.norm = 'BN'
    cfg.model.roi_heads.box_head.conv_norm = 'BN'
    cfg.model.roi_heads.mask_head.conv_norm = 'BN'
    torch.manual_seed(0)
    return instantiate(cfg.model).train()


def coco_batch(n=2, size=256):
    torch.manual_seed(1)
    out = []
    for _ in range(n):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(
            torch.tensor([[20., 30, 120, 160], [100, 60, 220, 200]]))
        inst.gt_classes = torch.tensor([1, 5])
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        masks[0, 30:160, 20:120] = masks[1, 60:200, 100:220] = True
        inst.gt_masks = BitMasks(masks)
        out.append(
            dict(
                image=torch.randint(0, 255, (3, size, size)).float(),
                height=size,
                width=size,
                instances=inst))
    return out


def test_lsj_mask_rcnn_analysis():
    """69 of the 78 weights of >= 2 dims are invariant: every conv with a
    norm; the refused are the RPN convs, the fc, the predictors and the
    transposed conv."""
    model, data = lsj_mask_rcnn(), coco_batch()
    with EventStorage(0):
        r = analyze_invariance(model, lambda: model(data))
    assert len(r.candidates()) == 78 and len(r.invariant()) == 69
    refused = {v.name for v in r.candidates() if not v.invariant}
    assert refused == {
        'proposal_generator.rpn_head.conv.conv0.weight',
        'proposal_generator.rpn_head.conv.conv1.weight',
        'proposal_generator.rpn_head.objectness_logits.weight',
        'proposal_generator.rpn_head.anchor_deltas.weight',
        'roi_heads.box_head.fc1.weight',
        'roi_heads.box_predictor.cls_score.weight',
        'roi_heads.box_predictor.bbox_pred.weight',
        'roi_heads.mask_head.deconv.weight',
        'roi_heads.mask_head.predictor.weight'
    }
    for name in ('backbone.bottom_up.res3.0.conv1.weight',
                 'backbone.fpn_lateral2.weight',
                 'roi_heads.mask_head.mask_fcn1.weight'):
        assert r[name].kind == 'channel', r[name].reason
    # the backbone and FPN in float64: a deep random float32 network rounds
    # the rescale's invariance to ~1e-4 of the loss
    bb = model.backbone.double()
    images = torch.randn(2, 3, 128, 128, dtype=torch.float64)

    def features_loss():
        return sum(f.sin().mean() for f in bb(images).values())

    rb = analyze_invariance(bb, features_loss)
    assert len(rb.invariant()) == 61 == len(rb.candidates())
    result = verify_invariance(bb, features_loss, rb)
    assert result.ok and result.counts()['invariant'] == 61, result.failures


def test_frozen_bn_faster_rcnn_is_refused_throughout():
    """COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml (FrozenBN, no FPN norm):
    nothing is invariant, and the backbone convs say FrozenBatchNorm2d."""
    from detectron2.modeling import build_model
    cfg = model_zoo.get_config('COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml')
    cfg.MODEL.DEVICE = 'cpu'
    torch.manual_seed(0)
    model = build_model(cfg).train()
    data = coco_batch()
    for d in data:
        d['instances'].remove('gt_masks')
    with EventStorage(0):
        r = analyze_invariance(model, lambda: model(data))
    assert len(r.candidates()) == 57 and not r.invariant()
    reason = r['backbone.bottom_up.res3.0.conv1.weight'].reason
    assert "FrozenBatchNorm2d 'backbone.bottom_up.res3.0.conv1.norm'" \
        in reason and 'frozen' in reason
    assert r['backbone.bottom_up.res2.0.conv1.weight'].reason == \
        'frozen (requires_grad=False)'


def test_optimizer_params_are_detectron2_s_plus_role_groups():
    model = Layers(('BN', 'GN'))
    kwargs = dict(
        base_lr=0.1,
        weight_decay=1e-4,
        weight_decay_norm=0.,
        overrides={'head.bias': dict(lr=0.3)})
    ours = get_wrs_optimizer_params(model, **kwargs)
    theirs = get_default_optimizer_params(model, **kwargs)
    main = [g for g in ours if ROLE not in g]
    assert len(main) == len(theirs)
    for a, b in zip(main, theirs):
        assert [id(p) for p in a['params']] == [id(p) for p in b['params']]
        assert {k: v for k, v in a.items() if not k.startswith('wrs_mm')} \
            == {k: v for k, v in b.items() if k != 'params'} | {
                'params': a['params']}
    roles = [g for g in ours if ROLE in g]
    # one settings class holds the conv weights (and the head's weight)
    assert sorted(g[ROLE] for g in roles) == [ROLE_SHIFTED, ROLE_WRS]
    assert all(g['params'] == [] and g['weight_decay'] == 0. for g in roles)


class ToyDataset(torch.utils.data.IterableDataset):

    def __iter__(self):
        g = torch.Generator().manual_seed(comm.get_rank())
        while True:
            yield torch.randn(
                4, 3, 8, 8, generator=g), torch.randint(
                    0, 5, (4, ), generator=g)


class ToyModel(Layers):

    def __init__(self, norms=('BN', 'FrozenBN', 'BN')):
        super().__init__(norms)

    def forward(self, batch):
        x, t = batch
        return dict(loss_cls=F.cross_entropy(super().forward(x), t))


class SkippingTrainer(SimpleTrainer):
    """Steps the optimizer every ``accumulate`` iterations, and never for a
    non-finite loss (as AMP's grad scaler skips)."""

    def __init__(self, *args, accumulate=1, skip_iters=(), **kwargs):
        super().__init__(*args, zero_grad_before_forward=False, **kwargs)
        self.accumulate, self.skip_iters = accumulate, skip_iters

    def run_step(self):
        x, t = next(self._data_loader_iter)
        loss = self.model((x, t))['loss_cls']
        if self.iter in self.skip_iters:
            loss = loss * float('inf')
        (loss / self.accumulate).backward()
        self.after_backward()
        if (self.iter + 1) % self.accumulate == 0:
            if all(
                    torch.isfinite(p.grad).all()
                    for p in self.model.parameters() if p.grad is not None):
                self.optimizer.step()
            self.optimizer.zero_grad()


def make_trainer(hooks, accumulate=1, skip_iters=()):
    torch.manual_seed(0)
    model = ToyModel().train()
    optimizer = torch.optim.SGD(
        get_wrs_optimizer_params(model, weight_decay_norm=0.),
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-2)
    loader = iter(torch.utils.data.DataLoader(ToyDataset(), batch_size=None))
    trainer = SkippingTrainer(
        model, loader, optimizer, accumulate=accumulate, skip_iters=skip_iters)
    trainer.register_hooks(hooks)
    return trainer


def test_wrs_counts_real_steps_and_writes_the_storage(tmp_path):
    """8 iterations, gradients accumulated over 2 and the step of iteration
    5 skipped (non-finite): 3 real steps; WRS every step rescales 3 times;
    the rescaled convs end at unit norm, without decay; the frozen-BN conv
    is refused; the scalars are in the EventStorage."""
    wrs = WeightRescaleHook(interval=1, output_dir=str(tmp_path))
    norms = NormDynamicsHook(interval=1)
    trainer = make_trainer([wrs, norms], accumulate=2, skip_iters=(5, ))
    trainer.train(0, 8)
    assert (wrs.steps, wrs.num_rescales) == (3, 3)
    assert norms.records == 3
    chosen = [e.name for e in wrs.rescaler.pack.entries]
    assert chosen == ['c0.weight', 'c2.weight']
    for name in chosen:
        w = dict(trainer.model.named_parameters())[name]
        assert torch.allclose(w.flatten(1).norm(dim=1), torch.ones(C))
    group = next(
        g for g in trainer.optimizer.param_groups if g.get(ROLE) == ROLE_WRS)
    assert group['weight_decay'] == 0. and len(group['params']) == 2
    history = trainer.storage.histories()
    assert history['wrs_norm_min'].latest() > 0
    assert len(history['wrs_norm_mean'].values()) == 3
    assert 'norm_mean' in history and 'eff_lr' in history
    assert 'norm/c0.weight/cos_abs_mean' in history
    with open(tmp_path / 'wrs_invariance.json') as f:
        assert '"c1.weight"' in f.read()


def test_wrs_state_goes_through_the_trainer_checkpoint():
    """trainer.state_dict() carries the hook's state; a new trainer that
    loads it (as resume_or_load does) has the weights in their no-decay
    group before its optimizer loads, and continues the count."""
    wrs = WeightRescaleHook(interval=2, target_norm='init')
    trainer = make_trainer([wrs])
    trainer.train(0, 4)
    state = trainer.state_dict()
    saved = state['hooks']['WeightRescaleHook']
    assert saved['steps'] == 4 and saved['num_rescales'] == 2
    assert sorted(saved['rescaled']) == ['c0.weight', 'c2.weight']
    wrs2 = WeightRescaleHook(interval=2, target_norm='init')
    trainer2 = make_trainer([wrs2])
    trainer2.load_state_dict(state)  # the optimizer layout must match
    trainer2.train(trainer2.iter + 1, 6)
    assert (wrs2.steps, wrs2.num_rescales) == (5, 2)
    assert wrs2.rescaler.targets == wrs.rescaler.targets
    wrs3 = WeightRescaleHook(interval=2, target_norm=1.0)
    with pytest.raises(
            ValueError,
            match="target_norm is 1.0 but the "
            "checkpoint was trained with 'init'.*without --resume"):
        make_trainer([wrs3]).load_state_dict(state)


def test_shifted_lp_hook_adds_its_gradient_before_the_step():
    """One SGD step (no momentum) with the shifted L2 on the BN convs:
    ``w' = w - lr (g + lambda (1 - eps/||w_j||) w_j)``, lambda the
    optimizer's decay; the frozen-BN conv keeps its plain decay."""
    hook = ShiftedLpHook(eps=0.5, p=2)
    trainer = make_trainer([hook])
    for g in trainer.optimizer.param_groups:
        g['momentum'] = 0.
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {}
    model.c0.weight.register_hook(lambda g: grads.__setitem__('c0', g))
    trainer.train(0, 1)
    w = before['c0.weight']
    row = w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = w - 0.1 * (grads['c0'] + 1e-2 * (1 - 0.5 / row) * w)
    assert torch.allclose(model.c0.weight, expected, atol=1e-6)
    assert hook.state_dict()['regularized'] == ['c0.weight', 'c2.weight']


def test_a_pattern_matching_no_weight_is_refused_before_training():
    trainer = make_trainer([WeightRescaleHook(include='^backbone')])
    with pytest.raises(
            ValueError,
            match=r"WeightRescaleHook.include: "
            r"pattern '\^backbone' matches no parameter"):
        trainer.train(0, 1)
    assert trainer.iter == 0


def test_detectron2_s_own_params_are_refused_naming_the_drop_in():
    """One group holds the rescaled convs and weights that keep their
    decay: the error names get_wrs_optimizer_params."""
    torch.manual_seed(0)
    model = ToyModel().train()
    optimizer = torch.optim.SGD(
        get_default_optimizer_params(model), lr=0.1, weight_decay=1e-2)
    loader = iter(torch.utils.data.DataLoader(ToyDataset(), batch_size=None))
    trainer = SkippingTrainer(model, loader, optimizer)
    trainer.register_hooks([WeightRescaleHook()])
    with pytest.raises(
            ValueError,
            match='its decay cannot be removed. Build '
            'the optimizer parameters with wrs_mm.detectron2.'
            'get_wrs_optimizer_params'):
        trainer.train(0, 1)


def test_optimizer_params_without_a_hook_refuse_to_train():
    trainer = make_trainer([])
    with pytest.raises(
            RuntimeError,
            match='no WeightRescaleHook or '
            'ShiftedLpHook is registered'):
        trainer.train(0, 1)


def _ddp_worker(out):
    """Two gloo ranks: NaiveSyncBatchNorm with cross-rank statistics, WRS
    every step; each rank saves its weights and report."""
    wrs = WeightRescaleHook(interval=1)
    torch.manual_seed(0)
    model = ToyModel(('naiveSyncBN', 'naiveSyncBN')).train()
    optimizer = torch.optim.SGD(
        get_wrs_optimizer_params(model),
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-2)
    ddp = nn.parallel.DistributedDataParallel(model)
    loader = iter(torch.utils.data.DataLoader(ToyDataset(), batch_size=None))
    trainer = SkippingTrainer(ddp, loader, optimizer)
    trainer.register_hooks([wrs])
    trainer.train(0, 3)
    torch.save(
        dict(
            state=model.state_dict(),
            chosen=[e.name for e in wrs.rescaler.pack.entries],
            reason=wrs.plugin.report['c0.weight'].reason),
        os.path.join(out, f'rank{comm.get_rank()}.pt'))


def test_ddp_through_launch_keeps_the_ranks_identical(tmp_path):
    launch(
        _ddp_worker,
        2,
        dist_url=f'file://{tmp_path}/rendezvous',
        args=(str(tmp_path), ))
    r0, r1 = (torch.load(tmp_path / f'rank{i}.pt') for i in (0, 1))
    assert r0['chosen'] == r1['chosen'] == ['c0.weight', 'c1.weight']
    assert 'NaiveSyncBatchNorm' in r0['reason']
    for k, v in r0['state'].items():
        assert torch.equal(v, r1['state'][k]), k
    assert math.isclose(
        float(r0['state']['c0.weight'].flatten(1).norm(dim=1).mean()),
        1.,
        rel_tol=1e-5)
