"""tools/train.py, tools/test.py and tools/dist_train.sh on a real config
(YOLOv3 + WRS, shrunk to CPU size) as a user runs them."""
import gc
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from wrs_mm.apis import close_distributed
from wrs_mm.apis.launch import load_config
from wrs_mm.testing import repo_root
from wrs_mm.testing import small_scale as C
import toy

ROOT = repo_root()

CONFIG = 'configs/yolov3/yolov3_d53-bn_wrs-tau10_1xb8-ms-320-640-100e-cos_coco.py'  # noqa: E501


def _env(cpu=False):
    """Subprocess environment; ``cpu``: hide GPUs (two processes on a
    one-GPU machine run on CPU / gloo). On CUDA, cuBLAS needs a fixed
    workspace for deterministic results."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        CUBLAS_WORKSPACE_CONFIG=':4096:8',
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    if cpu:
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def _shrunk_config(tmp_path, epochs):
    cfg = Config.fromfile(os.path.join(ROOT, CONFIG))
    C.shrink_det(cfg, tmp_path / 'unused', size=96, epochs=epochs, images=4)
    # no seed: tools/train.py --resume must restore the checkpoint's (the
    # shuffled sampler makes the data order depend on it); bitwise resume on
    # CUDA needs deterministic kernels (cuDNN, atomics)
    cfg.randomness = dict(seed=None, deterministic=torch.cuda.is_available())
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=True)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    path = str(tmp_path / 'shrunk.py')
    cfg.dump(path)
    return path


def _run(args, cwd) -> str:
    """Run a tool; on failure the error shows the tail of its output."""
    proc = subprocess.run(
        args, cwd=cwd, env=_env(), timeout=600, capture_output=True, text=True)
    assert proc.returncode == 0, (f'{args} exited {proc.returncode}:\n'
                                  f'{proc.stdout[-3000:]}\n'
                                  f'{proc.stderr[-6000:]}')
    return proc.stdout


def _rescaled(path):
    with open(path) as f:
        return {r['name'] for r in json.load(f) if r['rescaled']}


@pytest.mark.heavy
def test_train_resume_and_test(tmp_path):
    cfg = _shrunk_config(tmp_path, epochs=3)
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    _run([sys.executable, 'tools/train.py', cfg, '--work-dir',
          str(full)], ROOT)
    # resume from epoch 1 of the same run into another work dir
    log = _run([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(resumed), '--resume',
        str(full / 'epoch_1.pth')
    ], ROOT)
    toy.assert_same_weights(
        toy.checkpoint_weights(full / 'epoch_3.pth'),
        toy.checkpoint_weights(resumed / 'epoch_3.pth'))
    seed = torch.load(full / 'epoch_1.pth', weights_only=False)['meta']['seed']
    assert f'resume: seed {seed} of ' in log
    # the rescaled weights are the checkpoint's, not a new eps check's (an
    # unseeded stem conv can cross max_invariance_error after an epoch)
    rescaled = [_rescaled(d / 'wrs_invariance.json') for d in (full, resumed)]
    assert rescaled[0] == rescaled[1]
    assert f'resumed: rescaling the {len(rescaled[0])} weights' in log
    # auto-resume from the latest checkpoint of the work dir (nothing left)
    _run([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(full), '--resume'
    ], ROOT)
    out = tmp_path / 'preds.pkl'
    _run([
        sys.executable, 'tools/test.py', cfg,
        str(full / 'epoch_3.pth'), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(out)
    ], ROOT)
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and 'pred_instances' in preds[0]


@pytest.mark.heavy
def test_dist_train_two_processes(tmp_path):
    cfg = _shrunk_config(tmp_path, epochs=2)
    work = tmp_path / 'dist'
    env = _env(cpu=True)
    env['PORT'] = str(toy.free_port())
    subprocess.run(
        ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir',
         str(work)],
        check=True,
        cwd=ROOT,
        env=env,
        timeout=600,
        stdout=subprocess.DEVNULL)
    assert (work / 'epoch_2.pth').is_file()
    assert (work / 'wrs_invariance.json').is_file()
    logs = [f for d in work.iterdir() if d.is_dir() for f in d.glob('*.log')]
    text = logs[0].read_text()
    assert 'Distributed training: True' in text and 'GPU number: 2' in text
    assert 'WeightRescaleHook: rescaling' in text


def _gloo_threads() -> int:
    """Threads of gloo process groups in this process (torch names them
    pt_gloo_runloop, gloo_tcp_loop)."""
    names = []
    for t in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{t}/comm') as f:
                names.append(f.read())
        except FileNotFoundError:  # the thread ended
            pass
    return sum('gloo' in n for n in names)


def test_close_distributed_frees_the_process_group(tmp_path):
    """The tools end with it. A gloo group held by the runner's DDP wrapper
    outlives destroy_process_group, and its worker threads with it: at the
    interpreter's exit one of them aborted a finished 2-process
    dist_test.sh (SIGABRT). close_distributed frees the group, so its
    threads are joined while Python is alive."""
    base = _gloo_threads()
    dist.init_process_group(
        'gloo',
        init_method=f'file://{tmp_path / "store"}',
        rank=0,
        world_size=1)
    ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
    metrics = [dict(mae=1.0)]
    dist.broadcast_object_list(metrics, 0)  # the evaluator's last collective
    gc.disable()  # until close_distributed: no automatic collection
    try:
        runner = [ddp]
        runner.append(runner)  # held in a reference cycle, as by a Runner
        del ddp, runner
        dist.destroy_process_group()
        assert _gloo_threads() > base  # destroyed, not freed: threads run
        close_distributed()
    finally:
        gc.enable()
    assert not dist.is_initialized()
    assert _gloo_threads() <= base  # (a group another test left may go too)
    close_distributed()  # nothing to close: no error


def test_installed_configs_load_whatever_their_folder_names():
    """``mmdet::gn+ws/...``: mmengine's ``get_config`` refuses the ``+``;
    the tools read the package's ``.mim/configs`` themselves."""
    cfg = load_config('mmdet::gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py',
                      {'train_dataloader.batch_size': 1})
    assert cfg.model.backbone.conv_cfg.type == 'ConvWS'
    assert cfg.train_dataloader.batch_size == 1 and cfg.launcher == 'none'
    assert cfg.work_dir.endswith('faster-rcnn_r50_fpn_gn-ws-all_1x_coco')
