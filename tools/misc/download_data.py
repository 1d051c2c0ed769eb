"""Download the full data sets the configs train on, from their official
locations, into the layout the configs expect:

    python tools/misc/download_data.py cifar10 coco2017-val [--root data]
    python tools/misc/download_data.py coco2017-train --root /data

* ``cifar10``: CIFAR-10's Python batches (163 MB) into
  ``<root>/cifar10/cifar-10-batches-py/`` (``configs/classification``);
* ``coco2017-val``: COCO 2017 val images (778 MB) and the train/val
  annotations (241 MB) into ``<root>/coco/{val2017,annotations}/``
  (mmdet's ``data_root='data/coco/'``);
* ``coco2017-train``: the train images (18 GB) and the annotations into
  ``<root>/coco/{train2017,annotations}/``.

Each archive is downloaded to ``<root>/downloads/<name>.part``, with a
progress bar on stderr; a cut download resumes where it stopped (an HTTP
``Range`` request; a server that ignores it sends the file again from the
start). The finished file's MD5 is checked against the published one: a
mismatch removes the file and exits with status 1, naming both sums. Then
the archive is extracted and the layout checked. An archive already
downloaded and checked is not fetched again.

``--mirror URL`` fetches every file from ``URL/<file name>`` instead (a
local copy or a mirror; the checksums stay the official ones). Standard
library only: it runs before anything is installed.
"""
import argparse
import hashlib
import http.client
import os
import os.path as osp
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from typing import List, NamedTuple, Optional

CHUNK = 1 << 20


class Archive(NamedTuple):
    url: str
    md5: str
    into: str  # folder under the root it is extracted into


#: data set -> (its archives, the paths under the root that must exist)
DATASETS = {
    'cifar10': ([
        Archive('https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
                'c58f30108f718f92721af3b95e74349a', 'cifar10')
    ], [
        'cifar10/cifar-10-batches-py/data_batch_1',
        'cifar10/cifar-10-batches-py/test_batch'
    ]),
    'coco2017-val': ([
        Archive('http://images.cocodataset.org/zips/val2017.zip',
                '442b8da7639aecaf257c1dceb8ba8c80', 'coco'),
        Archive(
            'http://images.cocodataset.org/annotations/'
            'annotations_trainval2017.zip', 'f4bbac642086de4f52a3fdda2de5fa2c',
            'coco')
    ], ['coco/val2017', 'coco/annotations/instances_val2017.json']),
    'coco2017-train': ([
        Archive('http://images.cocodataset.org/zips/train2017.zip',
                'cced6f7f71b7629ddf16f17bbcfab6b2', 'coco'),
        Archive(
            'http://images.cocodataset.org/annotations/'
            'annotations_trainval2017.zip', 'f4bbac642086de4f52a3fdda2de5fa2c',
            'coco')
    ], ['coco/train2017', 'coco/annotations/instances_train2017.json']),
}


class ChecksumError(Exception):
    """A downloaded file whose MD5 is not the published one."""


def md5sum(path: str) -> str:
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def _progress(name: str, done: int, total: Optional[int], t0: float) -> None:
    rate = done / max(time.monotonic() - t0, 1e-6) / 1e6
    size = f'/{total / 1e6:.1f}' if total else ''
    pct = f' {100 * done / total:5.1f}%' if total else ''
    sys.stderr.write(f'\r{name}: {done / 1e6:.1f}{size} MB{pct} '
                     f'{rate:.1f} MB/s')
    sys.stderr.flush()


def fetch(url: str, dst: str, timeout: float = 60.) -> None:
    """Download ``url`` to ``dst``, resuming ``dst + '.part'`` if a cut
    download left one; ``dst`` appears only once the transfer is
    complete."""
    part = dst + '.part'
    have = osp.getsize(part) if osp.exists(part) else 0
    req = urllib.request.Request(url)
    if have:
        req.add_header('Range', f'bytes={have}-')
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if have and resp.status != 206:  # the server sends it all again
            have = 0
        length = resp.headers.get('Content-Length')
        total = have + int(length) if length is not None else None
        name, t0, done = osp.basename(dst), time.monotonic(), have
        with open(part, 'ab' if have else 'wb') as f:
            try:
                for block in iter(lambda: resp.read(CHUNK), b''):
                    f.write(block)
                    done += len(block)
                    _progress(name, done, total, t0)
            except http.client.IncompleteRead as e:  # the connection broke
                f.write(e.partial)
                done += len(e.partial)
    sys.stderr.write('\n')
    if total is not None and done != total:
        raise urllib.error.ContentTooShortError(
            f'{name}: cut after {done} of {total} bytes; run again to '
            'resume', None)
    os.replace(part, dst)


def download(archive: Archive, root: str, mirror: Optional[str] = None) -> str:
    """The checked archive under ``<root>/downloads`` (fetched unless a
    checked copy is there). Raises :class:`ChecksumError`, removing the
    file, when its MD5 is not ``archive.md5``."""
    name = archive.url.rsplit('/', 1)[1]
    url = f"{mirror.rstrip('/')}/{name}" if mirror else archive.url
    os.makedirs(osp.join(root, 'downloads'), exist_ok=True)
    dst = osp.join(root, 'downloads', name)
    checked = dst + '.md5-ok'
    if osp.exists(dst) and osp.exists(checked):
        print(f'{name}: downloaded and checked already')
        return dst
    if not osp.exists(dst):
        print(f'{name}: {url}')
        fetch(url, dst)
    got = md5sum(dst)
    if got != archive.md5:
        os.remove(dst)
        raise ChecksumError(
            f'{name}: MD5 {got}, expected {archive.md5}: the file is corrupt '
            'or not the published one; removed it, run again to download '
            'it anew')
    open(checked, 'w').close()
    return dst


def extract(path: str, into: str) -> None:
    os.makedirs(into, exist_ok=True)
    print(f'extracting {osp.basename(path)} into {into}')
    if path.endswith('.zip'):
        with zipfile.ZipFile(path) as z:
            z.extractall(into)
    else:
        with tarfile.open(path) as t:
            t.extractall(into, filter='data')


def prepare(name: str,
            root: str,
            mirror: Optional[str] = None,
            datasets: dict = DATASETS) -> List[str]:
    """Download, check and extract data set ``name`` under ``root``;
    return the layout's paths (raises ``FileNotFoundError`` naming a
    missing one)."""
    archives, layout = datasets[name]
    for archive in archives:
        extract(download(archive, root, mirror), osp.join(root, archive.into))
    paths = [osp.join(root, p) for p in layout]
    missing = [p for p in paths if not osp.exists(p)]
    if missing:
        raise FileNotFoundError(f'{name}: not in the extracted archives: '
                                f'{", ".join(missing)}')
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('datasets', nargs='+', choices=list(DATASETS))
    ap.add_argument(
        '--root', default='data', help='where data/ goes (default: data)')
    ap.add_argument('--mirror', help='fetch every file from MIRROR/<name>')
    ap.add_argument(
        '--keep-archives',
        action='store_true',
        help='keep <root>/downloads after extracting')
    args = ap.parse_args(argv)
    for name in args.datasets:
        try:
            for path in prepare(name, args.root, args.mirror):
                print(f'{name}: {path}')
        except (ChecksumError, FileNotFoundError, urllib.error.URLError) as e:
            print(f'download_data.py: {e}', file=sys.stderr)
            return 1
    if not args.keep_archives:
        shutil.rmtree(osp.join(args.root, 'downloads'), ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
