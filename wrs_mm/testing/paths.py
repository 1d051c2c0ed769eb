"""Where the configs (checkout or installed package) and the small real data
sets are."""
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
    """``$WRS_MM_DATA``, else ``shared/data`` next to the checkout: the folder
    holding ``coco_tiny/``, ``shanghaitech_b_subset/`` and
    ``crowd_points/``."""
    path = os.environ.get('WRS_MM_DATA') or os.path.join(
        os.path.dirname(_PACKAGE_PARENT), 'shared', 'data')
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f'small real data sets not found at {path}: set WRS_MM_DATA to '
            'the folder holding coco_tiny/, shanghaitech_b_subset/, '
            'crowd_points/')
    return path


def coco_root() -> str:
    """``coco_tiny/`` (COCO layout), with a trailing slash."""
    return os.path.join(data_root(), 'coco_tiny') + '/'
