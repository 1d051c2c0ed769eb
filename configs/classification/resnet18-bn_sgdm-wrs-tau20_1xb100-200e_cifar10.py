# The WRS twin of resnet18-bn_sgdm-wd_1xb100-200e_cifar10.py: every 20
# optimizer steps (tau, Table S1) each conv kernel is rescaled to unit norm per
# output channel and gets no weight decay; BN gammas / betas and the classifier
# keep 5e-4. Paper: 94.41 % top-1. Supp. B.2 also rescales the output layer,
# which is not scale-invariant; to do so too, give the hook include=['weight$']
# and allow_non_invariant=True.
_base_ = './resnet18-bn_sgdm-wd_1xb100-200e_cifar10.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=20)]
