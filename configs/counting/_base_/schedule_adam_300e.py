# Adam lr 1e-4 (constant), weight decay 1e-4, 300 epochs, validation every 5;
# the best checkpoint by validation MAE is kept.
max_epochs = 300
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-4, weight_decay=1e-4))
param_scheduler = []
