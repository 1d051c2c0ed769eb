"""Counting data pipeline: images with head points.

The usual preprocessing of point-supervised counting (as in the Bayesian-loss
code): cap the long side (2048 for UCF-QNRF) and optionally raise the short
side, random crop with the points kept consistent (points outside dropped),
horizontal flip, and packing into an mmengine data sample.
"""
import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS
from mmengine.structures import BaseDataElement

from ..image_io import read_image


@TRANSFORMS.register_module()
class LoadCrowdImage(BaseTransform):
    """Read ``img_path`` (BGR uint8). A missing file raises
    ``FileNotFoundError``, a file that exists but does not decode (truncated,
    not an image) ``ValueError``; both name the file."""

    def transform(self, results: dict) -> dict:
        img = read_image(results['img_path'])
        results['img'] = img
        results['ori_shape'] = results['img_shape'] = img.shape[:2]
        results['scale_factor'] = 1.
        results['gt_count'] = float(len(results['points']))
        return results


@TRANSFORMS.register_module()
class ResizeCrowd(BaseTransform):
    """Scale so that the long side is at most ``max_long`` and the short side
    at least ``min_short`` (when given); points scale with the image."""

    def __init__(self, max_long: int = 2048, min_short: int = None):
        self.max_long, self.min_short = max_long, min_short

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        s = min(1., self.max_long / max(h, w))
        if self.min_short is not None and min(h, w) * s < self.min_short:
            s = self.min_short / min(h, w)
        if s != 1.:
            nh, nw = round(h * s), round(w * s)
            results['img'] = mmcv.imresize(results['img'], (nw, nh))
            results['points'] = results['points'] * np.array([nw / w, nh / h],
                                                             np.float32)
            results['scale_factor'] = results['scale_factor'] * s
        results['img_shape'] = results['img'].shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomCropCrowd(BaseTransform):
    """Random ``size`` x ``size`` crop (zero-padded when the image is
    smaller); points are shifted and those outside the crop dropped."""

    def __init__(self, size: int = 512):
        self.size = size

    def transform(self, results: dict) -> dict:
        img, pts = results['img'], results['points']
        h, w = img.shape[:2]
        if h < self.size or w < self.size:
            pad = np.zeros(
                (max(h, self.size), max(w, self.size), img.shape[2]),
                img.dtype)
            pad[:h, :w] = img
            img, (h, w) = pad, pad.shape[:2]
        y0 = np.random.randint(0, h - self.size + 1)
        x0 = np.random.randint(0, w - self.size + 1)
        results['img'] = img[y0:y0 + self.size, x0:x0 + self.size]
        pts = pts - np.array([x0, y0], np.float32)
        keep = (pts[:, 0] >= 0) & (pts[:, 0] < self.size) & \
            (pts[:, 1] >= 0) & (pts[:, 1] < self.size)
        results['points'] = pts[keep]
        results['img_shape'] = results['img'].shape[:2]
        results['gt_count'] = float(keep.sum())
        return results


@TRANSFORMS.register_module()
class RandomFlipCrowd(BaseTransform):
    """Horizontal flip with probability ``prob``: ``x -> W - x``."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() < self.prob:
            w = results['img'].shape[1]
            results['img'] = np.ascontiguousarray(results['img'][:, ::-1])
            pts = results['points'].copy()
            pts[:, 0] = w - pts[:, 0]
            results['points'] = pts
        return results


@TRANSFORMS.register_module()
class PackCrowdInputs(BaseTransform):
    """``inputs``: CHW uint8 tensor; ``data_samples``: a ``BaseDataElement``
    with ``gt_points`` (N, 2), ``gt_count`` and the image metainfo."""

    def transform(self, results: dict) -> dict:
        img = torch.from_numpy(
            np.ascontiguousarray(results['img'].transpose(2, 0, 1)))
        sample = BaseDataElement(
            metainfo=dict(
                img_path=results['img_path'],
                ori_shape=results['ori_shape'],
                img_shape=results['img_shape'],
                scale_factor=results['scale_factor']))
        sample.gt_points = torch.from_numpy(
            np.asarray(results['points'], np.float32).reshape(-1, 2))
        sample.gt_count = torch.tensor(results['gt_count'])
        return dict(inputs=img, data_samples=sample)
