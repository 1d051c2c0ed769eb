"""The manual builds as mmdet's does (Sphinx + MyST, API pages from the
docstrings) without a single warning, and the README's relative links and
images resolve."""
import os
import re
import subprocess
import sys

from wrs_mm.testing import repo_root

ROOT = repo_root()
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def _anchors(md_path: str) -> set:
    """GitHub / MyST heading slugs of a markdown file (outside code)."""
    out, fence = set(), False
    with open(md_path) as f:
        for line in f:
            if line.startswith('```'):
                fence = not fence
            elif not fence and line.startswith('#'):
                title = line.lstrip('#').strip().lower()
                title = re.sub(r'[^\w\- ]', '', title)
                out.add(title.replace(' ', '-'))
    return out


def test_manual_builds_without_warnings(tmp_path):
    res = subprocess.run([
        sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-b', 'html',
        '-q',
        os.path.join(ROOT, 'docs', 'en'),
        str(tmp_path / 'html')
    ],
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    html = (tmp_path / 'html' / 'api.html').read_text()
    # API pages generated from the docstrings of core and engine
    for name in ('WeightRescaler', 'WeightRescaleHook',
                 'WRSOptimWrapperConstructor', 'ShiftedLpRegularizer'):
        assert name in html, name
    assert (tmp_path / 'html' / '_images' /
            'study_cifar10_curves.png').is_file()


def test_readme_links_and_images_resolve():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    links = [t for t in LINK.findall(readme) if '://' not in t]
    assert len(links) > 10
    for target in links:
        path, _, anchor = target.partition('#')
        full = os.path.join(ROOT, path)
        assert os.path.isfile(full), target
        if anchor:
            assert anchor in _anchors(full), target
    assert len(readme.splitlines()) <= 250  # a front page
