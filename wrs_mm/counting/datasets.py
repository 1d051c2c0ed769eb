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


def _numbered(folder: str, pattern: str) -> List[str]:
    import os
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    rx = re.compile(pattern)
    names = [f for f in os.listdir(folder) if rx.fullmatch(f)]
    return sorted(names, key=lambda f: int(rx.fullmatch(f).group(1)))


@DATASETS.register_module()
class ShanghaiTechDataset(BaseDataset):
    """ShanghaiTech part A or B; ``split`` is ``'train_data'`` or
    ``'test_data'`` (folders under ``data_root``)."""
    METAINFO = dict(classes=('person', ))

    def __init__(self, data_root: str, split: str = 'train_data', **kwargs):
        self.split = split
        super().__init__(data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        root = osp.join(self.data_root, self.split)
        out = []
        for name in _numbered(osp.join(root, 'images'), r'IMG_(\d+)\.jpg'):
            gt = osp.join(root, 'ground-truth', 'GT_' + name[:-4] + '.mat')
            pts = _load_points(gt, lambda m: m['image_info'][0, 0][0, 0][0])
            out.append(dict(img_path=osp.join(root, 'images', name),
                            points=pts))
        return out


@DATASETS.register_module()
class UCFQNRFDataset(BaseDataset):
    """UCF-QNRF; ``split`` is ``'Train'`` or ``'Test'``."""
    METAINFO = dict(classes=('person', ))

    def __init__(self, data_root: str, split: str = 'Train', **kwargs):
        self.split = split
        super().__init__(data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        root = osp.join(self.data_root, self.split)
        out = []
        for name in _numbered(root, r'img_(\d+)\.jpg'):
            ann = osp.join(root, name[:-4] + '_ann.mat')
            out.append(dict(img_path=osp.join(root, name),
                            points=_load_points(ann, lambda m: m['annPoints'])))
        return out
