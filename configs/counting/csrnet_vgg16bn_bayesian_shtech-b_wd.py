# CSRNet-BN + Bayesian loss on ShanghaiTech part B (1024 x 768 images),
# plain weight decay, the paper's optimizer settings (Adam lr 1e-4, wd 1e-4,
# batch 32, 512 crops). Liu et al. 2021 reports no ShanghaiTech number.
_base_ = './csrnet_vgg16bn_bayesian_ucf-qnrf_wd.py'

data_root = 'data/ShanghaiTech/part_B/'
train_dataloader = dict(
    dataset=dict(
        type='ShanghaiTechDataset', data_root=data_root, split='train_data'))
val_dataloader = dict(
    dataset=dict(
        type='ShanghaiTechDataset', data_root=data_root, split='test_data'))
test_dataloader = val_dataloader
