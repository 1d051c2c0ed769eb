"""A small BN classifier as an mmengine model, for Runner-level hook tests,
and the launch helpers the tests share (resumed runs, torchrun, side
venvs)."""
import copy
import os
import re

import torch
from mmengine.dataset import BaseDataset
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from torch.nn import functional as F

from wrs_mm.testing import unique_experiment_name
from conftest import BNNet


@MODELS.register_module(force=True)
class ToyBNClassifier(BaseModel):

    def __init__(self, width=8, inf_at_call=None, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.net = BNNet(width)
        self.inf_at_call = inf_at_call  # make the loss inf at this call
        self.calls = 0

    def forward(self, inputs, labels, mode='tensor', **kwargs):
        logits = self.net(inputs)
        if mode == 'loss':
            self.calls += 1
            loss = F.cross_entropy(logits, labels)
            if self.calls == self.inf_at_call:
                loss = loss * float('inf')
            return dict(loss=loss)
        return logits


@DATASETS.register_module(force=True)
class ToyImages(BaseDataset):
    """Fixed random images (seeded), labels from the mean colour."""

    def __init__(self, n=32, seed=0, **kwargs):
        self.n, self.seed = n, seed
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.n, 3, 8, 8, generator=g)
        y = (x.mean((1, 2, 3)) * 10).long().clamp(-2, 2) + 2
        return [dict(inputs=x[i], labels=y[i]) for i in range(self.n)]


def runner_cfg(work_dir, max_iters=10, hook=None, optim=None, **kw):
    cfg = dict(
        model=dict(type='ToyBNClassifier'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type='ToyImages'),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=optim or dict(
            optimizer=dict(
                type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
            constructor='WRSOptimWrapperConstructor'),
        custom_hooks=[hook] if hook else [],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=1000)),
        randomness=dict(seed=0),
    )
    cfg.update(kw)
    cfg['experiment_name'] = unique_experiment_name(
        kw.get('experiment_name', 'toy'))
    return copy.deepcopy(cfg)


CHECKPOINT_AT_3 = dict(
    checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False))

#: the schedules the param-group layouts are compared under: a linear lr
#: warm-up, then cosine lr and momentum
SCHEDULES = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(
        type='CosineAnnealingLR',
        T_max=6,
        eta_min=1e-3,
        by_epoch=False,
        begin=2,
        end=8),
    dict(
        type='CosineAnnealingMomentum',
        T_max=8,
        eta_min=0.5,
        by_epoch=False,
        begin=0,
        end=8)
]


def layout_case_cfg(work_dir,
                    constructor='WRSOptimWrapperConstructor',
                    optimizer=None,
                    shifted_mode='coupled',
                    max_iters=6,
                    **kw):
    """The toy run the param-group layouts are compared on: WRS (tau 2, with
    the optimizer state) on every weight but conv2, the shifted L2 on conv2,
    half the lr and twice the decay on the head, no decay on BN, under
    :data:`SCHEDULES`, a checkpoint every 3 iterations."""
    optim = dict(
        optimizer=optimizer or dict(
            type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True),
        constructor=constructor,
        paramwise_cfg=dict(
            custom_keys={'net.fc': dict(lr_mult=0.5, decay_mult=2.)},
            norm_decay_mult=0.,
            shifted_reg=dict(eps=0.5, include='conv2', mode=shifted_mode)))
    optim.update(kw.pop('optim_wrapper', {}))
    return runner_cfg(
        work_dir,
        max_iters,
        hook=dict(
            type='WeightRescaleHook',
            interval=2,
            exclude='conv2',
            rescale_optimizer_state=True),
        optim=optim,
        param_scheduler=SCHEDULES,
        default_hooks=CHECKPOINT_AT_3,
        **kw)


def resumed_runner(tmp_path,
                   hook=None,
                   name='resumed',
                   checkpoint=None,
                   optim=None,
                   default_hooks=CHECKPOINT_AT_3):
    """A Runner for 6 iterations in ``tmp_path / name`` that resumes
    ``checkpoint`` (default: iteration 3 of ``tmp_path / 'full'``); not
    trained yet."""
    from mmengine.runner import Runner
    return Runner.from_cfg(
        runner_cfg(
            tmp_path / name,
            6,
            hook=hook,
            optim=optim,
            default_hooks=default_hooks,
            load_from=str(checkpoint or tmp_path / 'full' / 'iter_3.pth'),
            resume=True,
            experiment_name=name))


def train_and_resume(tmp_path,
                     hook=None,
                     optim=None,
                     default_hooks=CHECKPOINT_AT_3,
                     resumed_hook=None):
    """Two trained Runners: 6 iterations uninterrupted (``full``, a
    checkpoint at iteration 3), and the same resumed from that checkpoint
    (``resumed``, with ``resumed_hook`` if given, else ``hook``)."""
    from mmengine.runner import Runner
    full = Runner.from_cfg(
        runner_cfg(
            tmp_path / 'full',
            6,
            hook=hook,
            optim=optim,
            default_hooks=default_hooks))
    full.train()
    resumed = resumed_runner(
        tmp_path,
        resumed_hook or hook,
        optim=optim,
        default_hooks=default_hooks)
    resumed.train()
    return full, resumed


def assert_same_state(a, b) -> None:
    """Two models' state dicts are bitwise equal."""
    a, b = a.state_dict(), b.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def free_port() -> int:
    """A TCP port for a rendezvous, free now and below the kernel's
    ephemeral range (``ip_local_port_range``). A port from that range (what
    binding port 0 gives) can be taken by any outgoing connection between
    this check and the launcher's bind: ``EADDRINUSE`` under load. Each
    pytest-xdist worker draws at random from its own slice of 20000 up to
    that range, so the two workers cannot pick the same port."""
    import random
    import socket
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError):
        ephemeral = 32768  # Linux's default start
    worker = int(
        re.sub(r'\D', '', os.environ.get('PYTEST_XDIST_WORKER', '')) or 0)
    span = (min(ephemeral, 32768) - 20000) // 4
    start = 20000 + (worker % 4) * span
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(start, start + span)
        with socket.socket() as s:
            try:
                s.bind(('', port))
            except OSError:
                continue
            return port
    raise RuntimeError(f'no free port in {start}-{start + span}')


def torchrun(script: str, args, procs: int) -> None:
    """``script`` (in this folder) on ``procs`` processes, CPU / gloo."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='',
        PYTHONPATH=os.pathsep.join([here] + [
            p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p
        ]))
    subprocess.run([
        sys.executable, '-m', 'torch.distributed.run',
        f'--nproc_per_node={procs}', f'--master_port={free_port()}',
        os.path.join(here, script), *map(str, args)
    ],
                   check=True,
                   env=env,
                   timeout=300)


def load_identical_ranks(out_dir) -> tuple:
    """What ranks 0 and 1 of a worker saved (``params_rank<r>.pt`` in
    ``out_dir``), after checking that their parameters are bitwise equal."""
    a, b = (torch.load(f'{out_dir}/params_rank{r}.pt') for r in (0, 1))
    for k in a['params']:
        assert torch.equal(a['params'][k], b['params'][k]), k
    return a, b


def checkpoint_weights(path) -> dict:
    """The ``state_dict`` of an mmengine checkpoint, on CPU."""
    return torch.load(
        path, map_location='cpu', weights_only=False)['state_dict']


def assert_same_weights(a: dict, b: dict) -> None:
    """Two state dicts with the same keys and bitwise equal tensors."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def side_venv(env_dir, paths, system_site: bool = False) -> tuple:
    """A new venv at ``env_dir`` (no pip) that also sees ``paths`` (a
    ``.pth`` of them); returns its python and its site-packages."""
    import os
    import subprocess
    import sys
    base = getattr(sys, '_base_executable', sys.executable)
    subprocess.run([
        base, '-m', 'venv', '--without-pip',
        *(['--system-site-packages'] if system_site else []),
        str(env_dir)
    ],
                   check=True)
    py = os.path.join(str(env_dir), 'bin', 'python')
    site = subprocess.run([
        py, '-c', "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ],
                          capture_output=True,
                          text=True,
                          check=True).stdout.strip()
    with open(os.path.join(site, 'project_env.pth'), 'w') as f:
        f.write(''.join(p + '\n' for p in paths))
    return py, site


class BiasDominatedConv(torch.nn.Conv2d):
    """A plain conv with a forward of its own and a large prior bias (as
    RetinaNet's classification conv): not scale-invariant."""

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


@MODELS.register_module(force=True)
class ToyWSHeadClassifier(BaseModel):
    """mmcv ``ConvWS2d`` -> ReLU -> a bias-dominated conv head -> logits."""

    def __init__(self, data_preprocessor=None):
        from mmcv.cnn import ConvWS2d
        super().__init__(data_preprocessor=data_preprocessor)
        self.ws = ConvWS2d(3, 8, 3, padding=1)
        self.head = BiasDominatedConv(8, 5, 1)
        torch.nn.init.constant_(self.head.bias, -4.595)

    def forward(self, inputs, labels, mode='tensor', **kwargs):
        logits = self.head(F.relu(self.ws(1e-3 * inputs))).mean((2, 3))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits
