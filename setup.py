from setuptools import find_packages, setup

setup(
    name='wrs_mm',
    version='0.1.0',
    description='Weight rescaling (WRS) and eps-shifted Lp regularization for '
    'scale-invariant weights, as an OpenMMLab 2.x plugin',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['wrs_mm', 'wrs_mm.*']),
    python_requires='>=3.8',
    install_requires=['torch>=2.0', 'numpy'],
    extras_require={
        'mm': ['mmengine==0.10.7', 'mmdet==3.3.0', 'mmsegmentation==1.2.2',
               'pycocotools', 'ftfy', 'regex'],
        'tests': ['pytest', 'scipy', 'adamp', 'matplotlib', 'triton'],
    },
)
