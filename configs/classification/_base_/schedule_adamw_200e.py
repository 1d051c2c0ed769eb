# Liu et al. 2021 Supp. B.2, AdamW + WD: 200 epochs, lr 1e-3 x0.1 at epochs
# 60, 120, 160, decoupled weight decay 5e-4.
_base_ = './schedule_sgdm_200e.py'
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=5e-4))
