"""Invariance analysis on real mmdet / mmseg models from their installed
configs (no pretrained weights, small real COCO inputs), each checked by
verify_invariance."""
from collections import Counter

import pytest
from mm_models import det_model_and_loss, seg_model_and_loss

from wrs_mm.core import analyze_invariance, verify_invariance


def _check(model, loss):
    report = analyze_invariance(model, loss)
    result = verify_invariance(model, loss, report)
    assert result.ok, result.failures
    assert result.refused_rel_change, 'some refused weight was perturbed'
    return report, Counter(v.kind for v in report.candidates())


def test_yolov3_bn_trained_convs_are_invariant():
    model, loss = det_model_and_loss(
        'mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py',
        model_overrides={'backbone.norm_eval': False})
    report, kinds = _check(model, loss)
    assert kinds == {'channel': 72, 'none': 3}
    refused = [v.name for v in report.candidates() if not v.invariant]
    assert refused == [f'bbox_head.convs_pred.{i}.weight' for i in range(3)]
    assert report['backbone.conv1.conv.weight'].kind == 'channel'


def test_yolov3_default_norm_eval_is_not_invariant():
    model, loss = det_model_and_loss(
        'mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py')
    report = analyze_invariance(model, loss)
    backbone = [v for v in report.candidates() if v.name.startswith('backbone')]
    assert backbone and all(not v.invariant for v in backbone)
    assert 'norm_eval=True' in backbone[0].reason
    # the neck / head keep training-mode BN
    assert report['neck.detect1.conv1.conv.weight'].kind == 'channel'


def test_faster_rcnn_r50_norm_eval_backbone_not_invariant():
    model, loss = det_model_and_loss(
        'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        # residual BN gammas start at 0 by default, which would hide the
        # effect of rescaling the convs before them
        model_overrides={'backbone.zero_init_residual': False})
    report, kinds = _check(model, loss)
    assert set(kinds) == {'none'} and not report.invariant()
    conv = report['backbone.layer2.0.conv1.weight']
    assert 'eval mode' in conv.reason and 'norm_eval=True' in conv.reason
    # frozen_stages=1: the stem and layer1 do not train at all
    assert report['backbone.layer1.0.conv1.weight'].reason.startswith('frozen')


def test_faster_rcnn_gn_ws_all_convs_are_weight_standardised():
    model, loss = det_model_and_loss(
        'mmdet::gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py',
        model_overrides={'backbone.zero_init_residual': False})
    report, kinds = _check(model, loss)
    assert kinds['ws'] == 54
    ws = report['backbone.layer3.1.conv2.weight']
    assert ws.kind == 'ws' and 'ConvWS2d' in ws.reason
    assert report['roi_head.bbox_head.shared_convs.0.conv.weight'].kind == 'ws'


@pytest.mark.parametrize('config', [
    'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'])
def test_deeplabv3_bn_trained(config):
    model, loss = seg_model_and_loss(config)
    report, kinds = _check(model, loss)
    assert kinds == {'channel': 62, 'none': 2}
    assert report['decode_head.aspp_modules.1.conv.weight'].kind == 'channel'
    assert not report['decode_head.conv_seg.weight'].invariant
