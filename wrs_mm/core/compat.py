"""The torch (and Triton) releases wrs_mm runs on, and what needs a newer one.

wrs_mm is tested on torch 2.1 (the newest release OpenMMLab's mmcv 2.1.0
wheels are built for, so what most mmdet 3.3 users have), torch 2.13 (the
development environment) and torch 2.15 (the newest release; without mmcv,
which does not build against it); setup.py admits every torch 2 from 2.1.
What a release lacks is either given a replacement here or refused
with a message naming the release it needs (:func:`require_torch`):

* ``torch.compiler.is_compiling`` (torch 2.3): ``torch._dynamo.is_compiling``
  before it, which dynamo folds to True while tracing in the same way;
* training under ``torch.compile`` (mmengine's ``compile=True``) with a
  wrs_mm feature needs torch >= 2.4 (:data:`MIN_COMPILE`; tested on 2.4.1
  and 2.13): torch 2.1's dynamo fails on mmengine's compiled ``train_step``
  (in the optimizer step or the data preprocessor) with or without wrs_mm,
  so the plugin refuses it at the first forward, before any step;
* the fused Triton kernels (:mod:`.kernels`) need Triton >= 3.0, which torch
  2.4 ships (torch 2.1 ships Triton 2.1): with an older Triton
  ``backend='auto'`` takes the pure-torch implementation and
  ``backend='triton'`` is refused (:data:`MIN_TRITON`).
"""
from typing import Tuple

import torch

#: the oldest Triton the fused kernels are enabled with, and the torch
#: release that ships it
MIN_TRITON = ((3, 0), '2.4')
#: the oldest torch wrs_mm trains under torch.compile with
MIN_COMPILE = (2, 4)


def version_tuple(version: str) -> Tuple[int, int]:
    """``(major, minor)`` of a version string such as ``'2.1.2+cu121'``."""
    major, minor = version.split('+')[0].split('.')[:2]
    return int(major), int(''.join(c for c in minor if c.isdigit()) or 0)


def torch_version() -> Tuple[int, int]:
    """``(major, minor)`` of the torch in use."""
    return version_tuple(torch.__version__)


def require_torch(version: Tuple[int, int],
                  feature: str,
                  why: str = '') -> None:
    """Raise ``RuntimeError`` unless torch is at least ``version``, naming
    ``feature``, the release it needs, the one installed and ``why``."""
    if torch_version() < version:
        raise RuntimeError(
            f'{feature} needs torch >= {version[0]}.{version[1]}; this is '
            f'torch {torch.__version__}' + (f': {why}' if why else ''))


if hasattr(torch.compiler, 'is_compiling'):  # torch >= 2.3
    is_compiling = torch.compiler.is_compiling
else:
    from torch._dynamo import is_compiling  # noqa: F401
