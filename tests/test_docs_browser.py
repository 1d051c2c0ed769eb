"""The built manual in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver``, installed with apt when missing),
driven by Selenium, opens every page at 1366 and 1920 px and fails on a code
block or table wider than its column (cut or scrolled sideways), a broken
image, a console error, or a link into the manual that leads nowhere.
Screenshots of the pages the README links go to
``work_dirs/docs_screenshots/`` (CI keeps the work dir)."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from urllib.parse import unquote, urlparse

import pytest

from wrs_mm.testing import repo_root

ROOT = repo_root()
WIDTHS = (1366, 1920)
SHOTS = osp.join(ROOT, 'work_dirs', 'docs_screenshots')
#: what overflows its container, per page: code blocks, tables, and Furo's
#: table wrappers (which scroll a too-wide table)
OVERFLOW_JS = """
const out = [];
for (const el of document.querySelectorAll(
    'article div.highlight pre, article table, article .table-wrapper')) {
  if (el.scrollWidth > el.clientWidth + 1) {
    out.push([el.tagName, el.className, el.scrollWidth, el.clientWidth,
              el.innerText.split('\\n')[0].slice(0, 80)]);
  }
}
return out;
"""
#: the widths of the page body and of the page's table of contents (0 when
#: Furo hides it): neither may be squeezed by the other
LAYOUT_JS = """
const toc = document.querySelector('.toc-drawer');
return [document.querySelector('article').clientWidth,
        toc && getComputedStyle(toc).display !== 'none' ?
        toc.getBoundingClientRect().width : 0];
"""
BROKEN_IMAGES_JS = """
return Array.from(document.images)
  .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
"""


def _ensure_chromium() -> None:
    """Debian's chromium and chromium-driver, with apt if they are missing
    (as tests/test_slurm.py installs Slurm); skipped, saying so, where apt
    cannot."""
    if shutil.which('chromium') and shutil.which('chromedriver'):
        return
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    res = subprocess.run(
        'apt-get update -qq && apt-get install -y -qq chromium '
        'chromium-driver',
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    if res.returncode or not shutil.which('chromedriver'):
        pytest.skip('needs Debian chromium and chromium-driver, which apt '
                    'could not install here: ' + res.stderr[-300:])


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('html')
    subprocess.run([
        sys.executable, '-m', 'sphinx', '-q', '-b', 'html',
        osp.join(ROOT, 'docs', 'en'),
        str(out)
    ],
                   check=True,
                   timeout=600)
    return str(out)


@pytest.fixture(scope='module')
def browser():
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which('chromium')
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', '--allow-file-access-from-files'):
        opts.add_argument(arg)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(
        service=Service(shutil.which('chromedriver')), options=opts)
    yield driver
    driver.quit()


def manual_pages(site: str) -> list:
    """The manual's own pages (not Sphinx's index, search and source
    views)."""
    pages = glob.glob(osp.join(site, '**', '*.html'), recursive=True)
    return sorted(
        p for p in pages
        if not osp.relpath(p, site).startswith(('_modules', '_sources'))
        and osp.basename(p) not in ('genindex.html', 'search.html',
                                    'py-modindex.html'))


def _ids(path: str, cache: dict) -> set:
    if path not in cache:
        with open(path, encoding='utf-8') as f:
            cache[path] = set(re.findall(r'\bid="([^"]+)"', f.read()))
    return cache[path]


def dead_links(driver, page: str, cache: dict) -> list:
    """Links of the page into the manual whose file or anchor is missing,
    and links that are not http(s) or into the manual."""
    dead = []
    for href in driver.execute_script(
            'return Array.from(document.querySelectorAll("a[href]"))'
            '.map(a => a.href)'):
        url = urlparse(href)
        if url.scheme in ('http', 'https', 'mailto'):
            continue
        if url.scheme != 'file':
            dead.append(href)
            continue
        target = unquote(url.path)
        if not osp.isfile(target):
            dead.append(href)
        elif url.fragment and target.endswith('.html') and \
                unquote(url.fragment) not in _ids(target, cache):
            dead.append(href)
    return dead


def readme_pages(site: str) -> list:
    """The built pages the README links to."""
    with open(osp.join(ROOT, 'README.md')) as f:
        links = re.findall(r'\]\(docs/en/([^)#]+)\.md', f.read())
    return sorted({osp.join(site, link + '.html') for link in links})


@pytest.mark.heavy
def test_every_page_fits_and_resolves_in_chromium(site, browser):
    pages = manual_pages(site)
    assert len(pages) >= 20, pages
    shots = set(readme_pages(site))
    assert len(shots) >= 10 and all(map(osp.isfile, shots)), shots
    os.makedirs(SHOTS, exist_ok=True)
    problems, cache = [], {}
    for width in WIDTHS:
        browser.set_window_size(width, 1200)
        for page in pages:
            browser.get('file://' + page)
            name = osp.relpath(page, site)
            for item in browser.execute_script(OVERFLOW_JS):
                problems.append((width, name, 'too wide', item))
            body, toc = browser.execute_script(LAYOUT_JS)
            if body < 700 or 0 < toc < 180:
                problems.append((width, name, 'layout', (body, toc)))
            for src in browser.execute_script(BROKEN_IMAGES_JS):
                problems.append((width, name, 'broken image', src))
            for entry in browser.get_log('browser'):
                if entry['level'] == 'SEVERE':
                    problems.append((width, name, 'console', entry['message']))
            if width == WIDTHS[0]:
                for href in dead_links(browser, page, cache):
                    problems.append((width, name, 'dead link', href))
            if page in shots:
                browser.save_screenshot(
                    osp.join(SHOTS, f"{name.replace('/', '_')[:-5]}"
                             f'_{width}.png'))
    assert not problems, '\n'.join(map(str, problems))
    assert len(os.listdir(SHOTS)) >= 2 * len(shots)
