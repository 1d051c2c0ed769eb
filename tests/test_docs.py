"""The manual builds as mmdet's does (Sphinx + MyST, API pages from the
docstrings) without a single warning, and the README's relative links and
images resolve."""
import ast
import glob
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
            'study_cifar10_adamw_curves.png').is_file()


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


def _message_text(node, constants: dict) -> str:
    """The literal text of a message expression, ``{}`` for what is filled
    in at run time."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        return ''.join(
            v.value if isinstance(v, ast.Constant) else '{}'
            for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _message_text(node.left, constants) + _message_text(
            node.right, constants)
    return '{}'


def plugin_messages(path: str) -> list:
    """``(line, text)`` of what a module can tell a user it refuses: the
    message of every ``raise``, of every warning (``warnings.warn``,
    ``print_log(level >= 30)``), and the reasons of the start-up table (a
    weight left alone: ``refused.append`` in the hook, ``Verdict.refused(code,
    reason)`` of the analysis)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    constants = {}
    for n in tree.body:
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name):
            text = _message_text(n.value, {})
            if text != '{}':
                constants[n.targets[0].id] = text
    for n in ast.walk(tree):
        msg = None
        if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call) and \
                n.exc.args:
            msg = n.exc.args[0]
        elif isinstance(n, ast.Call) and n.args:
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(
                f, 'id', '')
            level = [k.value for k in n.keywords if k.arg == 'level']
            if name == 'warn' or (name == 'print_log' and level
                                  and getattr(level[0], 'value', 0) >= 30):
                msg = n.args[0]
            elif name == 'append' and getattr(f.value, 'id', '') == \
                    'refused' and isinstance(n.args[0], ast.Tuple):
                msg = n.args[0].elts[1]
            elif name == 'refused' and len(n.args) > 1:
                msg = n.args[1]
        if msg is not None:
            yield n.lineno, _message_text(msg, constants)


def _normal(text: str) -> str:
    return re.sub(r'\s+', ' ', text).strip(' .:;,')


#: what a user can be told, checked against the troubleshooting page: the
#: plugin (core, adapters), the tools and launchers, the task packages and
#: the data lookup
MESSAGE_FILES = [
    'wrs_mm/core/*.py', 'wrs_mm/engine/*.py', 'wrs_mm/detectron2/*.py',
    'wrs_mm/apis/*.py', 'wrs_mm/apis/*/*.py', 'wrs_mm/classification/*.py',
    'wrs_mm/counting/*.py', 'wrs_mm/testing/paths.py',
    'wrs_mm/testing/cifar_study.py', 'tools/*.py', 'tools/*/*.py'
]


def faq_entries() -> list:
    """The troubleshooting page cut into entries (a table row, a bullet or
    a paragraph), each with its whitespace normalised."""
    with open(os.path.join(ROOT, 'docs', 'en', 'faq.md')) as f:
        text = f.read().replace('``', '`')
    parts = re.split(r'\n(?=\|)|\n(?=\* )|\n\s*\n', text)
    return [_normal(p) for p in parts if p.strip()]


def message_pattern(text: str):
    """A message as the page must write it: its literal parts in order, in
    full, with anything (the page's ``...``, or a sample value) where the
    code fills in a value at run time."""
    parts = [_normal(p) for p in text.split('{}')]
    return re.compile('.*?'.join(re.escape(p) for p in parts if p))


def test_every_refusal_is_on_the_troubleshooting_page():
    """docs/en/faq.md holds every message of :data:`MESSAGE_FILES`: each
    message's whole text, run-time values aside, in one entry of the
    page."""
    entries = faq_entries()
    files = sorted({
        p
        for pattern in MESSAGE_FILES
        for p in glob.glob(os.path.join(ROOT, pattern))
    })
    checked, missing = 0, []
    for path in files:
        for line, text in plugin_messages(path):
            if len(max((_normal(p) for p in text.split('{}')),
                       key=len)) < 6:  # nothing literal (IndexError(row))
                continue
            checked += 1
            pattern = message_pattern(text)
            if not any(pattern.search(e) for e in entries):
                missing.append(f'{os.path.relpath(path, ROOT)}:{line}: '
                               f'{_normal(text)!r}')
    assert checked > 100, checked
    assert not missing, '\n'.join(missing)


def test_changelog_heads_with_the_package_version():
    """The changelog's first section is the version the package says it is
    (a ``.devN`` version: the release in development)."""
    import wrs_mm
    with open(os.path.join(ROOT, 'docs', 'en', 'changelog.md')) as f:
        heads = [ln[3:] for ln in f if ln.startswith('## ')]
    release = re.sub(r'\.dev\d+$', '', wrs_mm.__version__)
    assert heads[0].split()[0] == release, (heads[0], wrs_mm.__version__)
    if release != wrs_mm.__version__:
        assert f'`{wrs_mm.__version__}`' in heads[0], heads[0]
    assert len(set(heads)) == len(heads)


def _flags(text: str) -> set:
    return {f.replace('_', '-') for f in re.findall(r'--[a-z][\w-]*', text)}


def tool_flags(script: str) -> set:
    """The long options of a tool, from its ``--help`` usage line."""
    out = subprocess.run([sys.executable, script, '--help'],
                         capture_output=True,
                         text=True,
                         check=True,
                         cwd=ROOT).stdout
    return _flags(out.split('\n\n')[0]) - {'--help'}


def test_option_references_match_the_code():
    """The hooks' and the constructor's docstrings (rendered in the user
    guides by autodoc) document every argument and ``shifted_reg`` key; the
    tools' flags in the manual are the parsers' flags."""
    import inspect

    from wrs_mm.core.shifted_regularization import SHIFTED_DEFAULTS
    from wrs_mm.engine import (NormDynamicsHook, WeightRescaleHook,
                               WRSOptimWrapperConstructor)
    for cls in (WeightRescaleHook, NormDynamicsHook):
        args = cls.__doc__.split('Args:', 1)[1]
        for name in list(inspect.signature(cls).parameters):
            assert re.search(rf'^\s+{name} \(', args, re.M), (cls, name)
    for key in SHIFTED_DEFAULTS:
        assert f'``{key}``' in WRSOptimWrapperConstructor.__doc__, key
    guides = os.path.join(ROOT, 'docs', 'en', 'user_guides')
    for page, cls in (('weight_rescaling.md', 'WeightRescaleHook'),
                      ('shifted_regularizer.md', 'WRSOptimWrapperConstructor'),
                      ('diagnostics.md', 'NormDynamicsHook')):
        with open(os.path.join(guides, page)) as f:
            assert f'.. autoclass:: wrs_mm.engine.{cls}' in f.read(), page
    with open(os.path.join(guides, 'paired_study.md')) as f:
        usage = f.read().split('```bash', 1)[1].split('```', 1)[0]
    assert _flags(usage) == tool_flags(
        os.path.join('tools', 'analysis', 'paired_study.py'))
    with open(os.path.join(guides, 'configs.md')) as f:
        text = f.read()
    train = text[text.index("`tools/train.py` takes mmdet's flags"):]
    train = train[:train.index(';')]
    assert _flags(train) == tool_flags(os.path.join('tools', 'train.py'))
    line = text[text.index('python tools/test.py CONFIG CHECKPOINT'):]
    line = line[:line.index('\n```')]
    common = {'--cfg-options', '--launcher', '--local-rank'}
    assert _flags(line) | common == tool_flags(
        os.path.join('tools', 'test.py'))
