"""Shared fixtures. ``tests/`` is deliberately not a package (the
mmsegmentation wheel installs a top-level ``tests``)."""
import os

import pytest
import torch
from torch import nn

from wrs_mm.testing import data_root

os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
torch.set_num_threads(2)
# Tests compare numbers across devices and against references: no TF32 on GPUs
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


class BNNet(nn.Module):
    """Small VGG-style net: every conv followed by BatchNorm, a linear head."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def bnnet():
    torch.manual_seed(0)
    return BNNet().train()


@pytest.fixture(scope='session')
def shared_data():
    return data_root()
