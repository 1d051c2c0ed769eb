# DeepLabv3 R-101 OS16 with weight rescaling (Liu et al. 2021, Sec. 6 /
# Supp. B.4): every 10 optimizer steps each conv kernel followed by a trained
# BatchNorm (all convs but the two classifiers) is rescaled to unit norm per
# output channel and gets no weight decay; BN and the rest keep 2e-4.
# Paper: +2.52 mIoU over WD (Fig. 9c).
_base_ = './deeplabv3_r101-d16_adamw-wd_2xb5-55k_voc12aug-512x512.py'

optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')
custom_hooks = [dict(type='WeightRescaleHook', interval=10)]
