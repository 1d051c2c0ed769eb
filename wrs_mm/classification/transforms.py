"""Classification pipeline: the CIFAR augmentation of Liu et al. 2021
(Supp. B.2): random horizontal flip, random brightness / contrast / hue /
saturation, and a random crop after zero-padding 32 x 32 images to 38 x 38
(64 to 72 for Tiny ImageNet). Images are RGB uint8 throughout; the model's
data preprocessor normalises them.
"""
import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS
from mmengine.structures import BaseDataElement

from ..image_io import read_image


@TRANSFORMS.register_module()
class LoadClsImage(BaseTransform):
    """``img`` (RGB uint8): kept when the data set decoded it already
    (CIFAR batches), else read from ``img_path``; a missing or undecodable
    file raises an error naming it."""

    def transform(self, results: dict) -> dict:
        if results.get('img') is None:
            results['img'] = read_image(results['img_path'], 'rgb')
        results['ori_shape'] = results['img_shape'] = \
            results['img'].shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomPadCrop(BaseTransform):
    """Zero-pad ``padding`` pixels on every side, then crop a random
    ``size`` x ``size`` window (32 -> 38 -> 32 with padding 3, Liu et al.
    2021).

    Args:
        size (int): output side. Defaults to 32.
        padding (int): pixels added on each side. Defaults to 3.
    """

    def __init__(self, size: int = 32, padding: int = 3):
        if size < 1 or padding < 0:
            raise ValueError('RandomPadCrop: size must be >= 1 and padding '
                             f'>= 0, got size={size}, padding={padding}')
        self.size, self.padding = size, padding

    def transform(self, results: dict) -> dict:
        img, p = results['img'], self.padding
        img = np.pad(img, ((p, p), (p, p), (0, 0)))
        h, w = img.shape[:2]
        if h < self.size or w < self.size:
            raise ValueError(f'RandomPadCrop: the padded image is {h} x {w}, '
                             f'smaller than size={self.size}')
        y = np.random.randint(h - self.size + 1)
        x = np.random.randint(w - self.size + 1)
        results['img'] = img[y:y + self.size, x:x + self.size]
        results['img_shape'] = results['img'].shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomColorJitter(BaseTransform):
    """Random brightness, contrast, saturation and hue, in that order, on an
    RGB uint8 image (the ``tf.image.random_*`` operations the paper lists):

    * brightness: ``x + d``, ``d ~ U(-brightness, brightness)`` (x in [0, 1]);
    * contrast: ``(x - mean) * c + mean``, ``c ~ U(1 - contrast,
      1 + contrast)`` (mean per channel);
    * saturation: ``(x - gray) * s + gray``, ``s ~ U(1 - saturation,
      1 + saturation)``;
    * hue: the HSV hue shifted by ``h ~ U(-hue, hue)`` turns.

    then clipped to [0, 1]. Liu et al. 2021 do not give magnitudes; the
    defaults are mild ones that keep CIFAR objects recognisable.
    """

    def __init__(self,
                 brightness: float = 0.2,
                 contrast: float = 0.2,
                 saturation: float = 0.2,
                 hue: float = 0.05):
        for name, v, top in (('brightness', brightness, 1.), ('contrast',
                                                              contrast, 1.),
                             ('saturation', saturation, 1.), ('hue', hue, .5)):
            if not 0 <= v <= top:
                raise ValueError(f'RandomColorJitter.{name} must be in '
                                 f'[0, {top}], got {v!r}')
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.hue = saturation, hue

    def transform(self, results: dict) -> dict:
        x = results['img'].astype(np.float32) / 255.
        u = np.random.uniform
        if self.brightness:
            x = x + u(-self.brightness, self.brightness)
        if self.contrast:
            m = x.mean((0, 1), keepdims=True)
            x = (x - m) * u(1 - self.contrast, 1 + self.contrast) + m
        if self.saturation:
            gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
            gray = gray[..., None]
            x = (x - gray) * u(1 - self.saturation, 1 + self.saturation) + gray
        x = np.clip(x, 0., 1.)
        if self.hue:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # H in degrees
            hsv[..., 0] = (hsv[..., 0] + 360. * u(-self.hue, self.hue)) % 360.
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        results['img'] = np.clip(x * 255. + .5, 0, 255).astype(np.uint8)
        return results


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """``inputs``: CHW uint8 tensor; ``data_samples``: a ``BaseDataElement``
    with ``gt_label`` (0-dim long tensor) and the metainfo ``img_path``,
    ``ori_shape``, ``img_shape`` and ``tag`` (when the data set sets one)."""

    def transform(self, results: dict) -> dict:
        img = torch.from_numpy(
            np.ascontiguousarray(results['img'].transpose(2, 0, 1)))
        meta = {
            k: results[k]
            for k in ('img_path', 'ori_shape', 'img_shape', 'tag')
            if k in results
        }
        sample = BaseDataElement(metainfo=meta)
        sample.gt_label = torch.tensor(int(results['gt_label']))
        return dict(inputs=img, data_samples=sample)
