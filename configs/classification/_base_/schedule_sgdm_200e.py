# Liu et al. 2021 Supp. B.2, SGDM: 200 epochs, lr 0.1 (momentum 0.9) x0.1 at
# epochs 60, 120, 160, weight decay 5e-4 (on every parameter).
max_epochs = 200
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=True,
        milestones=[60, 120, 160],
        gamma=0.1)
]
auto_scale_lr = dict(base_batch_size=100)
