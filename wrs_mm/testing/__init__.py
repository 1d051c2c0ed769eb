"""Helpers for wrs_mm's tests, benchmarks and demo (as ``mmdet.testing``).

* :mod:`.paths`: where the checkout's configs and the small real data sets
  are, looked up when asked (``$WRS_MM_DATA``, else the clone's
  ``sample_data/``);
* :mod:`.small_scale`: shrink a shipped config to CPU size, train and test it;
* :mod:`.mm_models`: real mmdet / mmseg models with one real training batch;
* :func:`get_hook`, :func:`groups_by_name`: what tests read from a runner;
  :func:`unique_experiment_name`: a runner's name that no other shares.

Only :mod:`.paths` and the runner helpers are imported here; the others import
mmdet / mmseg.
"""
from .paths import coco_root, data_root, repo_root
from .runner_utils import get_hook, groups_by_name, unique_experiment_name

__all__ = [
    'coco_root', 'data_root', 'repo_root', 'get_hook', 'groups_by_name',
    'unique_experiment_name'
]
