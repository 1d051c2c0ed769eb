"""Crowd-counting data sets with head-point annotations, as mmengine
``BaseDataset`` s.

* ShanghaiTech A / B (Zhang et al., CVPR 2016):
  ``{train_data,test_data}/images/IMG_N.jpg`` and
  ``{train_data,test_data}/ground-truth/GT_IMG_N.mat``, points in
  ``loadmat(f)['image_info'][0, 0][0, 0][0]``.
* UCF-QNRF (Idrees et al., ECCV 2018): ``{Train,Test}/img_XXXX.jpg`` and
  ``img_XXXX_ann.mat`` with ``annPoints``.

Every item is ``dict(img_path, points)`` with ``points`` an ``(N, 2)`` float32
array of (x, y) pixels. A missing or unreadable annotation file raises an
error naming it.
"""
import os
import os.path as osp
import re
from typing import Callable, List

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS


def _load_points(path: str, read: Callable) -> np.ndarray:
    from scipy.io import loadmat
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation file not found: {path}')
    try:
        pts = np.asarray(read(loadmat(path)), dtype=np.float32)
    except Exception as e:  # corrupt .mat or unexpected structure
        raise ValueError(f'cannot read head points from {path}: {e}') from e
    if pts.size == 0:
        return np.zeros((0, 2), np.float32)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f'{path}: expected an (N, 2) point array, got shape '
                         f'{pts.shape}')
    return pts[:, :2]


def _numbered(folder: str, pattern: str, owner: str) -> List[str]:
    """The image names in ``folder`` that match ``pattern`` (a regex whose
    group 1 is the image number), in numeric order; an error naming the
    folder and the pattern when none does."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{owner}: image folder not found: {folder}')
    rx = re.compile(pattern)
    names = [f for f in os.listdir(folder) if rx.fullmatch(f)]
    if not names:
        seen = sorted(os.listdir(folder))[:3]
        raise FileNotFoundError(
            f'{owner}: no image in {folder} matches the regex {pattern} '
            f'(names are case-sensitive; the folder holds {seen or "nothing"}'
            f'{" ..." if len(os.listdir(folder)) > 3 else ""})')
    return sorted(names, key=lambda f: int(rx.fullmatch(f).group(1)))


class _PointsDataset(BaseDataset):
    """Numbered images with a head-point ``.mat`` file each, under
    ``data_root/split``; subclasses say where and how (class attributes)."""
    METAINFO = dict(classes=('person', ))
    IMAGES = ''  # image folder, relative to data_root/split
    PATTERN = ''  # regex of the image names, group 1 the number

    def __init__(self, data_root: str, split: str, **kwargs):
        self.split = split
        super().__init__(data_root=data_root, **kwargs)

    @staticmethod
    def annotation(root: str, stem: str) -> str:
        """The ``.mat`` file of image ``stem`` (its name without ``.jpg``)."""
        raise NotImplementedError

    @staticmethod
    def points(mat: dict) -> np.ndarray:
        """The ``(N, 2)`` points in a loaded ``.mat`` file."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        root = osp.join(self.data_root, self.split)
        folder = osp.join(root, self.IMAGES)
        return [
            dict(
                img_path=osp.join(folder, name),
                points=_load_points(
                    self.annotation(root, name[:-4]), self.points))
            for name in _numbered(folder, self.PATTERN,
                                  type(self).__name__)
        ]


@DATASETS.register_module()
class ShanghaiTechDataset(_PointsDataset):
    """ShanghaiTech part A or B; ``split`` is ``'train_data'`` or
    ``'test_data'`` (folders under ``data_root``)."""
    IMAGES = 'images'
    PATTERN = r'IMG_(\d+)\.jpg'

    def __init__(self, data_root: str, split: str = 'train_data', **kwargs):
        super().__init__(data_root, split, **kwargs)

    @staticmethod
    def annotation(root: str, stem: str) -> str:
        return osp.join(root, 'ground-truth', f'GT_{stem}.mat')

    @staticmethod
    def points(mat: dict) -> np.ndarray:
        return mat['image_info'][0, 0][0, 0][0]


@DATASETS.register_module()
class UCFQNRFDataset(_PointsDataset):
    """UCF-QNRF; ``split`` is ``'Train'`` or ``'Test'``."""
    PATTERN = r'img_(\d+)\.jpg'

    def __init__(self, data_root: str, split: str = 'Train', **kwargs):
        super().__init__(data_root, split, **kwargs)

    @staticmethod
    def annotation(root: str, stem: str) -> str:
        return osp.join(root, f'{stem}_ann.mat')

    @staticmethod
    def points(mat: dict) -> np.ndarray:
        return mat['annPoints']
