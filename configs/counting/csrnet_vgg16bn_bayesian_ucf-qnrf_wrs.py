# CSRNet-BN + Bayesian loss on UCF-QNRF with weight rescaling (Liu et al. 2021,
# Sec. 6.2 / Supp. B.5): after every optimizer step (tau = 1) each conv kernel
# followed by BatchNorm (all but the output conv) is rescaled to unit norm per
# output channel and gets no weight decay; the rest keeps Adam's 1e-4.
# Paper: MAE 96.51, MSE 173.80 (WD: 103.84 / 176.28).
_base_ = './csrnet_vgg16bn_bayesian_ucf-qnrf_wd.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=1)]
