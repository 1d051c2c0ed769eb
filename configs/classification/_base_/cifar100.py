# CIFAR-100 (fine labels) from data/cifar100/cifar-100-python/; as CIFAR-10.
_base_ = './cifar10.py'
data_root = 'data/cifar100/'
num_classes = 100
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
data_preprocessor = dict(mean=[129.3, 124.1, 112.4], std=[68.2, 65.4, 70.4])
