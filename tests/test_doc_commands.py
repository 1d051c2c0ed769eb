"""Every command line of the README and the manual, as a reader pastes it
(the ```bash blocks; continuation lines joined, ``VAR=...`` prefixes and
shell variables of the block expanded, ``cd`` followed):

* ``python <script> ...``: the script exists and ``--help`` runs, and every
  ``--flag`` the page passes is one the script takes;
* ``bash tools/<script>.sh``: the script exists and parses (``bash -n``);
* ``make <target>``: the Makefile has the target;
* ``pip install <path>``: resolves (``--dry-run --no-deps``) from a copy of
  the checkout, run where the page says to run it;
* the weight-rescaling guide's short-run line trains, as written, with only
  the data shrunk (``tests/test_doc_snippets.py`` does the config blocks).

A command of any other kind fails the test until this module knows it.
"""
import glob
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest
from test_packaging import copy_checkout

from wrs_mm.testing import coco_root, repo_root

ROOT = repo_root()
FILES = ['README.md'] + sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'docs', 'en', '*.md')) +
    glob.glob(osp.join(ROOT, 'docs', 'en', '*', '*.md')))
#: the guide's short run with a shipped config (executed below)
SHORT_RUN = 'train_cfg.max_epochs=12 param_scheduler.0.end=200'
#: the data and size of that run, appended to its --cfg-options
SHRINK = [
    f'train_dataloader.dataset.data_root={coco_root()}',
    'train_dataloader.dataset.indices=1', 'train_dataloader.batch_size=1',
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=0',
    'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
    'test_cfg=None', 'test_dataloader=None', 'test_evaluator=None',
    'model.backbone.init_cfg=None'
]


def page_commands() -> list:
    """``(file:line, cwd relative to the checkout, argv)`` of every command
    of the pages' bash blocks."""
    out = []
    for path in FILES:
        with open(osp.join(ROOT, path)) as f:
            text = f.read()
        for m in re.finditer(r'```(?:bash|sh|shell)\n(.*?)```', text, re.S):
            line = text[:m.start()].count('\n') + 2
            cwd, env = '.', {}
            for cmd in re.sub(r'\\\n\s*', ' ', m.group(1)).splitlines():
                cmd = re.sub(r'(^|\s)#.*$', '', cmd).strip()
                if not cmd:
                    continue
                for name, value in env.items():
                    cmd = cmd.replace('$' + name, value)
                argv = shlex.split(cmd)
                while argv and re.match(r'^\w+=', argv[0]):
                    name, value = argv.pop(0).split('=', 1)
                    if not argv:  # an assignment line of the block
                        env[name] = value
                if not argv:
                    continue
                if argv[0] == 'cd':
                    cwd = osp.normpath(osp.join(cwd, argv[1]))
                    continue
                out.append((f'{path}:{line}', cwd, argv))
    return out


COMMANDS = page_commands()


def _help(script: str) -> str:
    """``--help`` of a script, run by the python of its environment: the
    Detectron2 environment's for ``tools/detectron2/`` (the checkout's
    wrs_mm on its path), else this one."""
    python, env = sys.executable, None
    if osp.join('tools', 'detectron2') in script:
        from test_user_env import user_env_python
        python = user_env_python('install_detectron2_env.sh')
        env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([python, script, '--help'],
                         capture_output=True,
                         text=True,
                         cwd=ROOT,
                         env=env,
                         timeout=300)
    assert res.returncode == 0, (script, res.stderr[-2000:])
    return res.stdout


def test_the_pages_have_the_commands_this_module_checks():
    kinds = {argv[0] for _, _, argv in COMMANDS}
    assert kinds <= {'python', 'bash', 'make', 'pip'}, kinds
    assert len(COMMANDS) >= 40, len(COMMANDS)
    assert any(SHORT_RUN in ' '.join(argv) for _, _, argv in COMMANDS)


@pytest.mark.heavy
def test_every_tool_command_names_a_script_and_flags_it_takes():
    helps, bad = {}, []
    for where, cwd, argv in COMMANDS:
        if argv[0] == 'python':
            script = osp.normpath(osp.join(ROOT, cwd, argv[1]))
            if not osp.isfile(script):
                bad.append((where, 'no such script', argv[1]))
                continue
            if script not in helps:
                helps[script] = _help(script)
            for flag in argv[2:]:
                if flag.startswith('--') and \
                        flag.split('=')[0] not in helps[script]:
                    bad.append((where, 'flag not taken', argv[1], flag))
        elif argv[0] == 'bash':
            script = osp.join(ROOT, cwd, argv[1])
            if not osp.isfile(script) or subprocess.run(['bash', '-n', script
                                                         ]).returncode:
                bad.append((where, 'no such script', argv[1]))
        elif argv[0] == 'make':
            with open(osp.join(ROOT, 'Makefile')) as f:
                targets = re.findall(r'^([\w-]+):', f.read(), re.M)
            if argv[1] not in targets:
                bad.append((where, 'no such make target', argv[1]))
    assert not bad, '\n'.join(map(str, bad))
    assert len(helps) >= 10, sorted(helps)


@pytest.mark.heavy
def test_pip_install_lines_resolve_from_a_checkout(tmp_path):
    clone = copy_checkout(str(tmp_path / 'wrs_mm'))
    lines = [(w, a) for w, _, a in COMMANDS if a[:2] == ['pip', 'install']]
    assert len(lines) >= 2, lines
    for where, argv in lines:
        args = [a.replace('/path/to/wrs_mm', clone) for a in argv[2:]]
        res = subprocess.run([
            sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps',
            '--no-build-isolation', '-q', *args
        ],
                             cwd=clone,
                             capture_output=True,
                             text=True,
                             timeout=600)
        assert res.returncode == 0, (where, argv, res.stderr[-2000:])


@pytest.mark.heavy
def test_the_short_run_line_trains_as_written(tmp_path):
    where, cwd, argv = [c for c in COMMANDS if SHORT_RUN in ' '.join(c[2])][0]
    assert argv[:2] == ['python', 'tools/train.py'] and '--cfg-options' in \
        argv, (where, argv)
    res = subprocess.run(
        [sys.executable, *argv[1:], *SHRINK, '--work-dir',
         str(tmp_path)],
        cwd=osp.join(ROOT, cwd),
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS='2'),
        timeout=900)
    assert res.returncode == 0, (where, res.stderr[-3000:])
    assert osp.isfile(tmp_path / 'epoch_12.pth'), os.listdir(tmp_path)
    assert 'WeightRescaleHook: rescaling' in res.stdout + res.stderr
