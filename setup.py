import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

#: shipped inside the package, as mmdet / mmseg ship theirs
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'wrs_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension() -> None:
    """``wrs_mm/.mim/{configs,tools,model-index.yml}`` from the checkout's
    top-level copies (the one source of truth): symbolic links for an
    editable install, copies for a wheel or sdist (mmdet's setup.py does the
    same). Lets mmengine resolve ``wrs_mm::`` config paths, and keeps the
    layout mmdet's and mmseg's packages have (mim itself is not supported:
    docs/en/get_started.md says why). A build from an sdist keeps the copies
    the sdist holds."""
    if any(c in sys.argv for c in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(c in sys.argv for c in ('sdist', 'bdist_wheel', 'build')):
        mode = 'copy'
    else:
        return
    repo = osp.dirname(osp.abspath(__file__))
    mim = osp.join(repo, 'wrs_mm', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(repo, name), osp.join(mim, name)
        if not osp.exists(src):
            continue  # building from an sdist: its .mim copies are used
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, dst)


#: site-packages file that lets mmengine resolve ``wrs_mm::`` configs before
#: anything imports wrs_mm (wrs_mm_config_hook.py says how)
CONFIG_HOOK_PTH = 'wrs_mm_config_hook.pth'


def write_config_hook_pth(target: str) -> None:
    """The ``.pth``: wrs_mm_config_hook.py's source inlined in its one line
    (no import, so no search of sys.path at interpreter start), skipped
    entirely with ``WRS_MM_CONFIG_HOOK=0``."""
    with open(
            osp.join(
                osp.dirname(osp.abspath(__file__)),
                'wrs_mm_config_hook.py')) as f:
        source = f.read()
    with open(target, 'w') as f:
        f.write("import os; os.environ.get('WRS_MM_CONFIG_HOOK', '1') != '0' "
                "and exec(%r, {'__name__': 'wrs_mm_config_hook'})\n" % source)


class BuildPyWithPth(build_py):
    """Also puts the ``.pth`` at the root of the wheel (site-packages)."""

    def run(self):
        super().run()
        write_config_hook_pth(osp.join(self.build_lib, CONFIG_HOOK_PTH))


class DevelopWithPth(develop):
    """``setup.py develop`` (make install): the ``.pth`` into
    site-packages, next to the egg-link; removed by ``--uninstall``."""

    def run(self):
        super().run()
        target = osp.join(self.install_dir, CONFIG_HOOK_PTH)
        if self.uninstall:
            if osp.exists(target):
                os.remove(target)
        else:
            write_config_hook_pth(target)


add_mim_extension()
setup(
    cmdclass=dict(build_py=BuildPyWithPth, develop=DevelopWithPth),
    name='wrs_mm',
    version=version(),
    description='Weight rescaling (WRS) and eps-shifted Lp regularization for '
    'scale-invariant weights, as an OpenMMLab 2.x plugin',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    classifiers=[
        'Development Status :: 4 - Beta',
        'License :: OSI Approved :: Apache Software License',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    packages=find_packages(include=['wrs_mm', 'wrs_mm.*']),
    include_package_data=True,  # wrs_mm/.mim (MANIFEST.in)
    python_requires='>=3.8',
    # the core: plain PyTorch. Tested on torch 2.1 (the reference user
    # environment, tools/install_user_env.sh), 2.13 (make install) and the
    # newest release (tools/install_newest_torch_env.sh); docs/en/
    # get_started.md has the matrix. No upper bound below the next major
    # release: that would exclude released torch versions that work (mmengine
    # and mmdet declare none). Nothing here may make pip replace a user's
    # torch, numpy or setuptools (tests/test_user_env.py,
    # tests/test_newest_torch.py).
    install_requires=['torch>=2.1,<3', 'numpy'],
    extras_require={
        # the mmengine adapters, configs and tools (mmcv 2.1.0 has no wheels
        # on PyPI for recent torch: tools/install.sh builds it with its ops)
        'mm': [
            # ranges tested: the lower bounds by tests/test_version_bounds.py,
            # the upper ones are the versions make install takes
            'mmcv>=2.1.0,<2.2.0',
            'mmengine>=0.10.3,<0.11',
            'mmdet>=3.2.0,<3.4',
            'mmsegmentation>=1.2.1,<1.3',
            'pycocotools',
            'ftfy',
            'regex',
            'matplotlib'
        ],
        # mmdet alone: the adapters and the detection configs, without
        # mmsegmentation and the text packages its models import
        'det': [
            'mmcv>=2.1.0,<2.2.0', 'mmengine>=0.10.3,<0.11',
            'mmdet>=3.2.0,<3.4', 'pycocotools', 'matplotlib'
        ],
        # (setuptools < 81, which mmengine's `pkg::` lookup needs, is pinned
        # by tools/install.sh, not here: wrs_mm_config_hook.py names it)
        # the manual (make docs; tests/test_docs.py builds it)
        'docs': [
            'sphinx>=7,<10', 'myst-parser>=3,<6', 'furo>=2024.8.6',
            'sphinx-copybutton>=0.5'
        ],
        # the suite, the benchmarks and the linters
        'tests': [
            # pytest 9 keeps a test's id in `_id`: pytest-xdist 3.8 (the
            # newest) still renames `_nodeid`, so --dist loadgroup ignores
            # xdist_group and grouped tests (one local Slurm cluster, one
            # cached environment) run on both workers at once
            'pytest>=8,<9',
            'pytest-xdist>=3.5',
            'scipy',
            'adamp',
            'scikit-learn',
            'triton',
            'flake8==7.5.0',
            'isort==5.13.2',
            'yapf==0.43.0',
            'selenium>=4.10'  # tests/test_docs_browser.py (Chromium: apt)
        ],
    },
)
