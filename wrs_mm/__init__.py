"""wrs_mm: weight rescaling (WRS) and the eps-shifted Lp regularizer for
scale-invariant weights, as an OpenMMLab 2.x plugin.

``import wrs_mm`` registers the mmengine adapters (hooks, constructor) in
mmengine's root registries, so they are visible from the mmdet and mmseg
scopes, and, where mmcv is installed, the classification and counting models,
data sets and transforms (built on ``mmcv.cnn`` / ``mmcv.transforms``).
``wrs_mm.core`` needs only PyTorch.
"""
from . import core  # noqa: F401
from .version import __version__  # noqa: F401

try:
    import mmengine  # noqa: F401
except ModuleNotFoundError as e:  # plain-PyTorch use of the core
    if e.name != 'mmengine':
        raise
else:
    from . import engine, registry  # noqa: F401
    try:
        import mmcv  # noqa: F401
    except ModuleNotFoundError as e:  # mmengine alone: the adapters only
        if e.name != 'mmcv':
            raise
    else:
        from . import classification, counting  # noqa: F401
