# The WRS twin of resnet18-bn_adamw-wd_1xb100-200e_cifar10.py: every 40
# optimizer steps (tau, Table S1) each conv kernel is rescaled to unit norm per
# output channel and gets no weight decay; BN gammas / betas and the classifier
# keep 5e-4. AdamW + WRS trains 100 epochs, lr x0.1 at epochs 30 / 60 / 80
# (Supp. B.2). Paper: 94.26 % top-1. Supp. B.2 also rescales the output layer,
# which is not scale-invariant; to do so too, give the hook include=['weight$']
# and allow_non_invariant=True.
_base_ = './resnet18-bn_adamw-wd_1xb100-200e_cifar10.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=40)]
max_epochs = 100
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR', by_epoch=True, milestones=[30, 60, 80], gamma=0.1)
]
