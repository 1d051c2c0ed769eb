"""mmengine's FlexibleRunner and its strategies, on CPU / gloo: DDPStrategy
trains with WRS and the eps-shifted L2 on 2 processes, every rank
identical; FSDPStrategy (its sharded weights would make per-row norms wrong)
is refused before the first step with an error naming it and what is
supported; so are torch FSDP, fully_shard and DeepSpeed-wrapped models
handed to the plugin directly."""
import json
import os

import pytest
import torch
from torch import nn

from wrs_mm.engine.plugin import SUPPORTED, check_unsharded
import toy


def test_ddp_strategy_two_processes(tmp_path):
    """Identical ranks, and bitwise the training of one param group per
    parameter (``per_param.PerParamWRSConstructor``)."""
    toy.torchrun('flexible_train.py', [tmp_path, 'ddp', 'ddp_per_param'], 2)
    a, b = toy.load_identical_ranks(tmp_path / 'ddp')
    ref, _ = toy.load_identical_ranks(tmp_path / 'ddp_per_param')
    for k, v in a['params'].items():
        assert torch.equal(v, ref['params'][k]), k
    assert a['rescales'] == b['rescales'] == 3
    assert a['records'] == b['records'] == 6  # NormDynamicsHook, every step
    conv1 = a['params']['net.conv1.weight'].flatten(1)  # rescaled last step
    assert torch.allclose(
        conv1.norm(dim=1), torch.ones(conv1.shape[0]), atol=1e-5)
    conv2 = a['params']['net.conv2.weight'].flatten(1)  # shifted-L2 only
    assert not torch.allclose(
        conv2.norm(dim=1), torch.ones(conv2.shape[0]), atol=1e-2)


def test_fsdp_strategy_is_refused_before_the_first_step(tmp_path):
    """Refused by the constructor (shifted_reg), or, with WRS or the norm
    probe alone, by that hook's before_run (one process tries the three)."""
    variants = ['fsdp', 'fsdp_hook', 'fsdp_norm']
    toy.torchrun('flexible_train.py', [tmp_path, *variants], 1)
    for variant in variants:
        with open(tmp_path / variant / 'error_rank0.json') as f:
            err = json.load(f)
        assert err['iter'] == 0, (variant, err)  # nothing trained
        assert 'wrs_mm does not support FSDP' in err['error'], variant
        assert "FSDPStrategy" in err['error'] and SUPPORTED in err['error']
        assert not (tmp_path / variant / 'params_rank0.pt').exists()


def composable_fully_shard() -> tuple:
    """The installed torch's ``fully_shard`` and what the refusal names:
    FSDP2 (DTensor parameters; torch >= 2.6, under ``_composable`` from
    2.4), else torch 2.1-2.3's composable FSDP (flat parameters)."""
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import fully_shard
        except ImportError:
            from torch.distributed._composable import fully_shard
            return (lambda m: fully_shard(m, device_id=torch.device('cpu')),
                    r'torch fully_shard \(composable FSDP\)')
    return fully_shard, 'sharded DTensor parameters'


def test_sharded_models_are_refused(tmp_path):
    """torch FSDP, fully_shard (DTensor parameters) and a DeepSpeed engine
    are refused; DDP and plain modules pass. mmengine 0.10.7's
    DeepSpeedStrategy does not import with the deepspeed PyPI has now
    (0.19.8: no ``deepspeed.runtime.fp16.onebit``), so a class of the
    engine's name stands in for it, and the constructor refuses
    ``DeepSpeedOptimWrapper``."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel
    os.environ.update(
        MASTER_ADDR='127.0.0.1', MASTER_PORT=str(toy.free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        check_unsharded(net)
        check_unsharded(nn.parallel.DistributedDataParallel(net))
        with pytest.raises(RuntimeError, match='does not support FSDP'):
            check_unsharded(
                FullyShardedDataParallel(
                    nn.Sequential(nn.Conv2d(3, 4, 3)),
                    device_id=torch.device('cpu')))
        fully_shard, what = composable_fully_shard()
        shard = nn.Sequential(nn.Conv2d(3, 4, 3))
        fully_shard(shard)
        with pytest.raises(RuntimeError, match=what):
            check_unsharded(shard)

        class DeepSpeedEngine(nn.Module):
            pass

        with pytest.raises(RuntimeError, match="DeepSpeedStrategy"):
            check_unsharded(DeepSpeedEngine())
        # DeepSpeedStrategy builds the optimizer wrapper before the engine:
        # the constructor refuses its wrapper type
        from wrs_mm.engine import WRSOptimWrapperConstructor
        with pytest.raises(RuntimeError, match="DeepSpeedStrategy"):
            WRSOptimWrapperConstructor(
                dict(
                    type='DeepSpeedOptimWrapper',
                    optimizer=dict(type='SGD', lr=0.1)))(
                        net)
    finally:
        dist.destroy_process_group()
