# mmengine runtime for the counting models: the best checkpoint by MAE.
_base_ = '../../_base_/default_runtime_root.py'
default_hooks = dict(checkpoint=dict(interval=5, save_best='mae', rule='less'))
