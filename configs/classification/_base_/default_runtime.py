# mmengine runtime for the classification models: the best checkpoint by
# top-1 accuracy.
_base_ = '../../_base_/default_runtime_root.py'
default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(interval=10, save_best='accuracy/top1', rule='greater'))
env_cfg = dict(cudnn_benchmark=True)
