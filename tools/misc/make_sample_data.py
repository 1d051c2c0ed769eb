"""Cut the subsets the repository ships in ``sample_data/`` from larger
copies of the same data sets, by fixed rules (so the cut can be redone and
checked):

    python tools/misc/make_sample_data.py SRC [--out sample_data]

``SRC`` holds ``coco_tiny/`` (COCO layout), ``shanghaitech_b_subset/``
(ShanghaiTech layout) and ``cifar10_subset/`` (class folders), as
``sample_data/README.md`` describes them. Taken:

* COCO: the first 32 train and 16 val images in the annotation file's
  order (so a config's ``indices=N`` picks the same images as on the full
  file), their annotations unchanged, all 80 categories;
* ShanghaiTech Part B: train ``IMG_1`` .. ``IMG_16``, test ``IMG_1`` ..
  ``IMG_4``, with their ``GT_IMG_N.mat``;
* CIFAR-10: per class, train ``0000.jpg`` .. ``0049.jpg`` and test
  ``0000.jpg`` .. ``0019.jpg``.

Files are copied byte for byte; only the COCO annotation files are
rewritten (the same records, fewer of them). ``--out`` must not exist.
"""
import argparse
import json
import os
import os.path as osp
import shutil

COCO = dict(train=32, val=16)
SHANGHAITECH = dict(train_data=16, test_data=4)
CIFAR = dict(train=50, test=20)


def copy(src: str, dst: str) -> None:
    os.makedirs(osp.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def cut_coco(src: str, out: str) -> None:
    for split, n in COCO.items():
        ann = f'annotations/instances_{split}2017.json'
        with open(osp.join(src, ann)) as f:
            coco = json.load(f)
        images = coco['images'][:n]
        ids = {i['id'] for i in images}
        coco['images'] = images
        coco['annotations'] = [
            a for a in coco['annotations'] if a['image_id'] in ids
        ]
        os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
        with open(osp.join(out, ann), 'w') as f:
            json.dump(coco, f, separators=(',', ':'))
        for image in images:
            name = f"{split}2017/{image['file_name']}"
            copy(osp.join(src, name), osp.join(out, name))


def cut_shanghaitech(src: str, out: str) -> None:
    for split, n in SHANGHAITECH.items():
        for i in range(1, n + 1):
            for name in (f'images/IMG_{i}.jpg',
                         f'ground-truth/GT_IMG_{i}.mat'):
                copy(osp.join(src, split, name), osp.join(out, split, name))


def cut_cifar(src: str, out: str) -> None:
    for split, n in CIFAR.items():
        for label in sorted(os.listdir(osp.join(src, split))):
            for i in range(n):
                name = osp.join(split, label, f'{i:04d}.jpg')
                copy(osp.join(src, name), osp.join(out, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('src')
    ap.add_argument('--out', default='sample_data')
    args = ap.parse_args()
    if osp.exists(args.out):
        ap.error(f'--out {args.out} exists: give a new folder')
    cut_coco(osp.join(args.src, 'coco_tiny'), osp.join(args.out, 'coco_tiny'))
    cut_shanghaitech(
        osp.join(args.src, 'shanghaitech_b_subset'),
        osp.join(args.out, 'shanghaitech_b_subset'))
    cut_cifar(
        osp.join(args.src, 'cifar10_subset'),
        osp.join(args.out, 'cifar10_subset'))


if __name__ == '__main__':
    main()
