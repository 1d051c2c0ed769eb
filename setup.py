import os.path as osp
from setuptools import find_packages, setup


def version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'wrs_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
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
    python_requires='>=3.8',
    # the core: plain PyTorch
    install_requires=['torch>=2.0', 'numpy'],
    extras_require={
        # the mmengine adapters, configs and tools (mmcv 2.1.0 has no wheels
        # on PyPI for recent torch: tools/install.sh builds it with its ops)
        'mm': [
            'mmcv==2.1.0', 'mmengine==0.10.7', 'mmdet==3.3.0',
            'mmsegmentation==1.2.2', 'pycocotools', 'ftfy', 'regex',
            'setuptools<81', 'matplotlib'
        ],
        # the suite, the benchmarks and the linters
        'tests': [
            'pytest', 'scipy', 'adamp', 'scikit-learn', 'triton',
            'flake8==7.5.0', 'isort==5.13.2', 'yapf==0.43.0'
        ],
    },
)
