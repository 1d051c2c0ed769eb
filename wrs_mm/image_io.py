"""Reading an image file with an error that names it (shared by the counting
and classification pipelines)."""
import os.path as osp

import numpy as np


def read_image(path: str, channel_order: str = 'bgr') -> np.ndarray:
    """``(H, W, 3)`` uint8 image. A missing file raises
    ``FileNotFoundError``, a file that exists but does not decode (truncated,
    not an image) ``ValueError``; both name the file."""
    import mmcv
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file not found: {path}')
    try:
        img = mmcv.imread(path, channel_order=channel_order)
    except Exception as e:  # some decoders raise instead of returning None
        raise ValueError(f'image {path} could not be decoded (truncated '
                         f'or not an image): {e}') from e
    if img is None:
        raise ValueError(f'image {path} exists but could not be decoded '
                         '(truncated or not an image)')
    return img
