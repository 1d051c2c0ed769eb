"""tools/misc/download_data.py against a local HTTP server that serves
archives made here: the download and the layout, the resume of a cut
download (an HTTP Range request), and the refusal of a file whose MD5 is
not the published one. The server binds port 0 and keeps its socket: no
port race."""
import hashlib
import importlib.util
import io
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile
import threading
import urllib.error
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wrs_mm.testing import repo_root

spec = importlib.util.spec_from_file_location(
    'download_data', osp.join(repo_root(), 'tools', 'misc',
                              'download_data.py'))
dd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dd)


class Handler(SimpleHTTPRequestHandler):
    """Serves the folder, with ``Range: bytes=N-``; the first request of a
    file in ``cut`` sends its full length but only half of it."""
    requests, cut = [], set()

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        name = osp.basename(path)
        self.requests.append((name, self.headers.get('Range')))
        if not osp.isfile(path):
            self.send_error(404)
            return
        with open(path, 'rb') as f:
            data = f.read()
        start = 0
        if self.headers.get('Range'):
            start = int(self.headers['Range'].split('=')[1].rstrip('-'))
            self.send_response(206)
            self.send_header('Content-Range',
                             f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        if name in self.cut:
            self.cut.discard(name)
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    """``(url, served folder)``."""
    served = tmp_path / 'served'
    served.mkdir()
    Handler.requests, Handler.cut = [], set()

    def handler(*args, **kwargs):
        return Handler(*args, directory=str(served), **kwargs)

    httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}', served
    httpd.shutdown()
    httpd.server_close()


def cifar_archive(path) -> str:
    """A tar.gz laid out as cifar-10-python.tar.gz (random bytes, 256 KB);
    its MD5."""
    with tarfile.open(path, 'w:gz') as t:
        for name in ('data_batch_1', 'test_batch', 'batches.meta'):
            data = os.urandom(1 << 17)
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_resumes_a_cut_transfer_checks_and_extracts(server, tmp_path):
    url, served = server
    md5 = cifar_archive(served / 'cifar-10-python.tar.gz')
    table = dict(
        cifar10=([dd.Archive(f'{url}/cifar-10-python.tar.gz', md5, 'cifar10')],
                 dd.DATASETS['cifar10'][1]))
    root = str(tmp_path / 'data')
    Handler.cut.add('cifar-10-python.tar.gz')
    with pytest.raises(urllib.error.ContentTooShortError, match='resume'):
        dd.prepare('cifar10', root, datasets=table)
    part = osp.join(root, 'downloads', 'cifar-10-python.tar.gz.part')
    half = osp.getsize(part)
    assert 0 < half < osp.getsize(served / 'cifar-10-python.tar.gz')
    paths = dd.prepare('cifar10', root, datasets=table)
    assert Handler.requests == [('cifar-10-python.tar.gz', None),
                                ('cifar-10-python.tar.gz', f'bytes={half}-')]
    assert [osp.relpath(p, root) for p in paths] == [
        'cifar10/cifar-10-batches-py/data_batch_1',
        'cifar10/cifar-10-batches-py/test_batch'
    ]
    assert dd.md5sum(osp.join(root, 'downloads',
                              'cifar-10-python.tar.gz')) == md5
    dd.prepare('cifar10', root, datasets=table)  # checked: not fetched again
    assert len(Handler.requests) == 2


def test_coco_layout_from_zip_archives(server, tmp_path):
    url, served = server
    with zipfile.ZipFile(served / 'val2017.zip', 'w') as z:
        z.writestr('val2017/000000000139.jpg', os.urandom(2048))
    with zipfile.ZipFile(served / 'annotations_trainval2017.zip', 'w') as z:
        for split in ('train', 'val'):
            z.writestr(f'annotations/instances_{split}2017.json',
                       json.dumps(dict(images=[], annotations=[])))
    archives = [
        dd.Archive(f'{url}/{n}', dd.md5sum(served / n), 'coco')
        for n in ('val2017.zip', 'annotations_trainval2017.zip')
    ]
    table = {'coco2017-val': (archives, dd.DATASETS['coco2017-val'][1])}
    root = str(tmp_path / 'data')
    paths = dd.prepare('coco2017-val', root, datasets=table)
    assert osp.isfile(osp.join(root, 'coco', 'val2017', '000000000139.jpg'))
    assert all(osp.exists(p) for p in paths)


def test_a_file_with_another_md5_is_refused_and_removed(server, tmp_path):
    """The command, with the official table and a mirror that serves
    something else under the official name."""
    url, served = server
    md5 = cifar_archive(served / 'cifar-10-python.tar.gz')
    root = str(tmp_path / 'data')
    res = subprocess.run([
        sys.executable,
        osp.join(repo_root(), 'tools', 'misc', 'download_data.py'), 'cifar10',
        '--root', root, '--mirror', url
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f'MD5 {md5}, expected c58f30108f718f92721af3b95e74349a' in \
        res.stderr
    assert 'run again to download it anew' in res.stderr
    assert not os.listdir(osp.join(root, 'downloads'))
    assert not osp.exists(osp.join(root, 'cifar10'))
