# CSRNet-BN + Bayesian loss on ShanghaiTech part A with WRS (tau = 1).
_base_ = './csrnet_vgg16bn_bayesian_shtech-a_wd.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=1)]
