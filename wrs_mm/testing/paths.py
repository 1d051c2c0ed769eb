"""Where the configs (checkout or installed package) and the small real data
sets (``sample_data/`` of the checkout, or ``$WRS_MM_DATA``) are."""
import os

_PACKAGE_PARENT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def repo_root() -> str:
    """The folder holding ``configs/`` and ``tools/``: the checkout (wrs_mm
    installed editable, as ``make install`` does), else the installed
    package's ``wrs_mm/.mim`` (a wheel)."""
    mim = os.path.join(_PACKAGE_PARENT, 'wrs_mm', '.mim')
    for root in (_PACKAGE_PARENT, mim):
        if os.path.isdir(os.path.join(root, 'configs')):
            return root
    raise FileNotFoundError(
        f'neither {_PACKAGE_PARENT} nor {mim} holds configs/: install wrs_mm '
        'with `pip install -e .` from the clone, or from its wheel')


def data_root() -> str:
    """The folder holding ``coco_tiny/``, ``shanghaitech_b_subset/`` and
    ``cifar10_subset/``: ``$WRS_MM_DATA`` if set (a larger copy with the same
    layout), else ``sample_data/`` of the checkout (the subsets the
    repository ships, ``sample_data/README.md``)."""
    path = os.environ.get('WRS_MM_DATA')
    if path:
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f'WRS_MM_DATA={path} is not a folder: set it to a folder '
                'holding coco_tiny/, shanghaitech_b_subset/, cifar10_subset/ '
                '(the layout of sample_data/ in the clone), or unset it to '
                'use the clone\'s sample_data/')
        return path
    path = os.path.join(_PACKAGE_PARENT, 'sample_data')
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f'no sample data at {path}: the demo and the tests read the '
            'subsets shipped in the clone\'s sample_data/ (wrs_mm installed '
            'from a wheel has none). Run from a clone (pip install -e .), or '
            'set WRS_MM_DATA to a folder holding coco_tiny/, '
            'shanghaitech_b_subset/, cifar10_subset/')
    return path


def coco_root() -> str:
    """``coco_tiny/`` (COCO layout), with a trailing slash."""
    return os.path.join(data_root(), 'coco_tiny') + '/'
