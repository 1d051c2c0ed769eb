"""Image-classification data sets as mmengine ``BaseDataset`` s.

* :class:`ImageFolderDataset`: ``data_root/<split>/<class>/<image>`` (the
  layout of ImageNet-style folders and of the shipped CIFAR-10 subset);
* :class:`CIFARDataset`: CIFAR-10 / CIFAR-100 in their own binary batches
  (``cifar-10-batches-py/``, ``cifar-100-python/``, Krizhevsky 2009).

Both give items ``dict(img_path, gt_label)`` (CIFAR also ``img``, the
decoded RGB image) and can hold out the last ``holdout_per_class`` images of
every class (in file / batch order) as a validation split chosen from the
training data: ``holdout=False`` is the rest, ``holdout=True`` those images.
``tag`` is copied into every item (see
:class:`~wrs_mm.classification.metric.Accuracy`).
"""
import os
import os.path as osp
import pickle
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.webp')


class _HoldoutDataset(BaseDataset):
    """Items grouped by class; the per-class holdout split and the tag."""

    def __init__(self,
                 holdout_per_class: int = 0,
                 holdout: bool = False,
                 tag: Optional[str] = None,
                 **kwargs):
        name = type(self).__name__
        if not isinstance(holdout_per_class, int) or holdout_per_class < 0:
            raise ValueError(f'{name}.holdout_per_class must be an integer '
                             f'>= 0, got {holdout_per_class!r}')
        if holdout and not holdout_per_class:
            raise ValueError(f'{name}: holdout=True needs holdout_per_class '
                             '> 0 (how many images of each class to hold '
                             'out)')
        self.holdout_per_class, self.holdout = holdout_per_class, holdout
        self.tag = tag
        super().__init__(**kwargs)

    def items_by_class(self) -> Tuple[Sequence[str], List[List[dict]]]:
        """The class names and, per class, its items in a fixed order."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        classes, per_class = self.items_by_class()
        self._metainfo.setdefault('classes', tuple(classes))
        k = self.holdout_per_class
        out = []
        for label, items in enumerate(per_class):
            if k and len(items) <= k:
                raise ValueError(
                    f'{type(self).__name__}: class {classes[label]!r} has '
                    f'{len(items)} images, not more than holdout_per_class='
                    f'{k}')
            if k:
                items = items[-k:] if self.holdout else items[:-k]
            for item in items:
                item['gt_label'] = label
                if self.tag is not None:
                    item['tag'] = self.tag
            out += items
        return out


@DATASETS.register_module()
class ImageFolderDataset(_HoldoutDataset):
    """``data_root/data_prefix/<class>/<image>``: one folder per class, the
    label the class's index in ``metainfo['classes']`` (default: the folder
    names, sorted). Images in each folder are taken in name order. A missing
    or empty class folder raises an error naming it; an image that does not
    decode fails when it is loaded
    (:class:`~wrs_mm.classification.transforms.LoadClsImage`), naming it.

    Args:
        data_root (str): the data set folder.
        data_prefix (str): the split's folder under it, e.g. ``'train'``.
        holdout_per_class, holdout, tag: see the module docstring.
    """

    def __init__(self, data_root: str, data_prefix: str = 'train', **kwargs):
        self.split = data_prefix
        super().__init__(data_root=data_root, **kwargs)

    def items_by_class(self):
        root = osp.join(self.data_root, self.split)
        if not osp.isdir(root):
            raise FileNotFoundError(
                f'ImageFolderDataset: split folder not found: {root}')
        classes = self._metainfo.get('classes') or sorted(
            d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
        if not classes:
            raise FileNotFoundError(
                f'ImageFolderDataset: {root} holds no class folder')
        per_class = []
        for c in classes:
            folder = osp.join(root, c)
            if not osp.isdir(folder):
                raise FileNotFoundError(
                    f'ImageFolderDataset: class folder not found: {folder}')
            names = sorted(
                f for f in os.listdir(folder)
                if f.lower().endswith(IMAGE_EXTENSIONS))
            if not names:
                raise FileNotFoundError(
                    f'ImageFolderDataset: class folder {folder} holds no '
                    f'image (extensions {", ".join(IMAGE_EXTENSIONS)})')
            per_class.append(
                [dict(img_path=osp.join(folder, n)) for n in names])
        return classes, per_class


@DATASETS.register_module()
class CIFARDataset(_HoldoutDataset):
    """CIFAR-10 or CIFAR-100 from the official Python pickles.

    ``data_root`` is the folder holding ``cifar-10-batches-py/`` (files
    ``data_batch_1..5``, ``test_batch``, ``batches.meta``) or
    ``cifar-100-python/`` (``train``, ``test``, ``meta``; fine labels), or that
    folder itself. Items carry the decoded image as ``img`` (RGB uint8,
    32 x 32) and ``img_path`` = ``<batch file>#<index>``.

    Args:
        data_root (str): see above.
        split (str): ``'train'`` or ``'test'``.
        holdout_per_class, holdout, tag: see the module docstring.
    """
    LAYOUTS = {
        'cifar-10-batches-py':
        (['data_batch_%d' % i for i in range(1, 6)], ['test_batch'],
         'batches.meta', b'labels', b'label_names'),
        'cifar-100-python':
        (['train'], ['test'], 'meta', b'fine_labels', b'fine_label_names'),
    }

    def __init__(self, data_root: str, split: str = 'train', **kwargs):
        if split not in ('train', 'test'):
            raise ValueError("CIFARDataset.split must be 'train' or 'test', "
                             f'got {split!r}')
        self.split = split
        super().__init__(data_root=data_root, **kwargs)

    def _layout(self):
        for name, layout in self.LAYOUTS.items():
            for folder in (osp.join(self.data_root, name), self.data_root):
                if osp.basename(osp.normpath(folder)) == name and \
                        osp.isdir(folder):
                    return folder, layout
        raise FileNotFoundError(
            f'CIFARDataset: {self.data_root} is not and does not hold '
            f'{" or ".join(self.LAYOUTS)}')

    @staticmethod
    def _unpickle(path: str) -> dict:
        if not osp.isfile(path):
            raise FileNotFoundError(f'CIFARDataset: file not found: {path}')
        try:
            with open(path, 'rb') as f:
                return pickle.load(f, encoding='bytes')
        except Exception as e:
            raise ValueError(f'CIFARDataset: cannot read {path} as a CIFAR '
                             f'pickle: {e}') from e

    def items_by_class(self):
        folder, (train, test, meta, label_key, names_key) = self._layout()
        classes = self._metainfo.get('classes') or [
            n.decode()
            for n in self._unpickle(osp.join(folder, meta))[names_key]
        ]
        per_class = [[] for _ in classes]
        for fname in train if self.split == 'train' else test:
            path = osp.join(folder, fname)
            batch = self._unpickle(path)
            try:
                data = np.asarray(batch[b'data'],
                                  np.uint8).reshape(-1, 3, 32,
                                                    32).transpose(0, 2, 3, 1)
                labels = batch[label_key]
            except (KeyError, ValueError) as e:
                raise ValueError(f'CIFARDataset: {path} is not a CIFAR batch '
                                 f'(data of N x 3072 bytes, {label_key!r}): '
                                 f'{e}') from e
            for i, (img, label) in enumerate(zip(data, labels)):
                if not 0 <= label < len(classes):
                    raise ValueError(f'CIFARDataset: {path}#{i} has label '
                                     f'{label}, outside the {len(classes)} '
                                     'classes')
                per_class[label].append(
                    dict(
                        img=np.ascontiguousarray(img), img_path=f'{path}#{i}'))
        return classes, per_class
