"""The Slurm and multi-node paths on a real scheduler: a single-node Slurm
cluster started for this module (``wrs_mm.testing.slurm``; slurm-wlm and
munge installed with apt when missing), CPU tasks on gloo.

* ``tools/slurm_train.sh`` with ``GPUS_PER_NODE=0`` trains 2 tasks, whose
  ranks end bitwise equal; ``tools/slurm_test.sh`` evaluates the checkpoint
  to the metric of a single-process ``tools/test.py``;
* ``tools/dist_train.sh`` on two "nodes" (``NNODES=2``, ``NODE_RANK`` 0 and
  1, one process each) ends bitwise equal to the single-node 2-task run;
* the paired study submits its runs with ``sbatch`` and returns; a run
  cancelled after its first checkpoint is resubmitted with ``--resume`` by
  the next call; the collected table equals the ``--launcher local`` study's,
  bitwise, and so do the final weights of the resumed run.

The tests share the cluster, so they run in one pytest-xdist worker.
"""
import copy
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

from wrs_mm.apis.paired_study import read_curve
from wrs_mm.testing import repo_root
from wrs_mm.testing import small_scale as C
from wrs_mm.testing.slurm import LocalSlurm, install_slurm
import toy

ROOT = repo_root()
HERE = osp.dirname(osp.abspath(__file__))
CLS = osp.join(ROOT, 'configs', 'classification')
WRS_CFG = osp.join(CLS, 'vgg16-bn_adamw-wrs-tau40_1xb100-100e_cifar10.py')
SHIFTED_CFG = osp.join(CLS,
                       'vgg16-ws-bn_sgdm-shifted-l2_1xb100-200e_cifar10.py')
METRIC = 'accuracy/top1'


def on_cluster(test):
    return pytest.mark.heavy(pytest.mark.xdist_group('slurm')(test))


@pytest.fixture(scope='module')
def slurm():
    reason = install_slurm()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm().start()
    yield cluster
    cluster.stop()


def shrunk(src: str, path, epochs: int = 2, hooks=()) -> str:
    """``src`` on 100 CIFAR-10 training images (batch 25) and 50 test
    images, VGG widths / 16, ``epochs`` epochs with a checkpoint and a
    validation each, WRS every step, every rank's final weights saved,
    ``hooks`` added."""
    cfg = Config.fromfile(src)
    C.shrink_cls(
        cfg,
        osp.dirname(path),
        images=(100, 50),
        epochs=epochs,
        batch_size=25,
        width=0.0625)
    for hook in cfg.get('custom_hooks', []):
        hook['interval'] = 1
    cfg.custom_hooks = cfg.get('custom_hooks',
                               []) + [dict(type='RankStateHook'), *hooks]
    cfg.custom_imports = dict(
        imports=['wrs_mm', 'rank_state_hook'], allow_failed_imports=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.train_cfg.val_interval = 1
    cfg.dump(str(path))
    return str(path)


def tool_env(slurm, **more) -> dict:
    """A user's shell on the cluster: this environment's python first on
    PATH, this folder importable (the rank hook), one thread per task."""
    env = dict(
        slurm.env,
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
        PYTHONPATH=HERE,
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='',
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1',
        **more)
    env.pop('PYTEST_XDIST_WORKER', None)
    return env


def run(cmd, env, cwd=ROOT, timeout=900, returncode=0) -> str:
    res = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == returncode, out[-5000:]
    return out


@on_cluster
def test_slurm_scripts_and_two_node_launch_on_cpu(slurm, tmp_path):
    cfg = shrunk(WRS_CFG, tmp_path / 'wrs.py')
    wd = tmp_path / 'slurm'
    env = tool_env(
        slurm,
        GPUS='2',
        GPUS_PER_NODE='0',
        CPUS_PER_TASK='1',
        MASTER_PORT=str(toy.free_port()))
    out = run([
        'bash', 'tools/slurm_train.sh', slurm.partition, 'wrs_cpu', cfg,
        str(wd)
    ], env)
    assert '--gres' not in out and '--ntasks-per-node=2' in out  # set -x
    toy.load_identical_ranks(wd)
    log = open(next(wd.glob('*/*.log'))).read()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'WeightRescaleHook: rescaling 13 weights' in log
    # slurm_test.sh on 2 tasks: the metric of a single-process test.py
    ckpt = str(wd / 'epoch_2.pth')
    env['MASTER_PORT'] = str(toy.free_port())
    out = run([
        'bash', 'tools/slurm_test.sh', slurm.partition, 'wrs_test', cfg, ckpt,
        '--work-dir',
        str(tmp_path / 'test2')
    ], env)
    single = tool_env(slurm)
    run([
        sys.executable, 'tools/test.py', cfg, ckpt, '--work-dir',
        str(tmp_path / 'test1')
    ], single)
    two, one = (
        json.load(open(next((tmp_path / d).glob('*/*.json'))))
        for d in ('test2', 'test1'))
    assert two[METRIC] == one[METRIC], (two, one)
    assert 'GPU number: 2' in open(next(
        (tmp_path / 'test2').glob('*/*.log'))).read()

    # dist_train.sh on two nodes of one process each (NODE_RANK 0 and 1)
    nodes = tmp_path / 'nodes'
    port = str(toy.free_port())
    procs = [
        subprocess.Popen([
            'bash', 'tools/dist_train.sh', cfg, '1', '--work-dir',
            str(nodes)
        ],
                         cwd=ROOT,
                         env=dict(
                             tool_env(slurm),
                             NNODES='2',
                             NODE_RANK=str(rank),
                             MASTER_ADDR='127.0.0.1',
                             PORT=port),
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT,
                         text=True) for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:]
    toy.load_identical_ranks(nodes)
    toy.assert_same_weights(
        toy.checkpoint_weights(nodes / 'epoch_2.pth'),
        toy.checkpoint_weights(ckpt))


def wait_until(predicate, timeout=600, poll=0.2) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, 'timed out'
        time.sleep(poll)


def wait_requeued(slurm, job: str, log) -> None:
    """Wait until ``job`` is back in the queue after its requeue (restarted,
    pending); fail with its log if it ended instead."""
    wait_until(
        lambda: slurm.job(job).get('Restarts', '0') != '0' and slurm.job(job).
        get('JobState') == 'PENDING' or _ended(slurm, job, log),
        timeout=300)


def start_requeued_now(slurm, job: str, log) -> None:
    """Wait until ``job`` is requeued, then start it now: Slurm holds a
    requeued job for about 2 minutes (its begin time) before it may start
    again."""
    wait_requeued(slurm, job, log)
    for _ in range(100):  # refused while the requeue is being processed
        if slurm.run('scontrol', 'update', f'JobId={job}',
                     'StartTime=now').returncode == 0:
            return
        time.sleep(0.5)


def _ended(slurm, job: str, log) -> bool:
    """Fails the test, with the job's log, if ``job`` ended instead of being
    requeued."""
    state = slurm.job(job).get('JobState')
    assert state not in ('COMPLETED', 'FAILED', 'CANCELLED'), (
        f'job {job} {state} instead of requeued:\n'
        f'{log.read_text()[-3000:] if log.is_file() else ""}')
    return False


@on_cluster
def test_slurm_train_saves_on_signal_requeues_and_resumes(slurm, tmp_path):
    """A user's batch job (``--requeue``) runs ``ON_SIGNAL=requeue
    tools/slurm_train.sh`` with 2 tasks. ``scancel --signal=USR1`` (what
    ``#SBATCH --signal=USR1@S`` sends before the time limit) reaches both
    ranks in iteration 2 of 4, the first of epoch 2: they stop after it,
    save ``iter_3.pth``, and the job is requeued. It starts again, resumes
    in the middle of epoch 2 and completes, its ranks bitwise equal to each
    other and to an uninterrupted 2-task run."""
    cfg = shrunk(WRS_CFG, tmp_path / 'wrs.py')
    signalled = shrunk(
        WRS_CFG,
        tmp_path / 'signalled.py',
        hooks=[dict(type='SignalAtIterHook', at=2, mode='outside')])
    env = tool_env(slurm, GPUS='2', GPUS_PER_NODE='0', CPUS_PER_TASK='1')
    ref = tmp_path / 'uninterrupted'
    run([
        'bash', 'tools/slurm_train.sh', slurm.partition, 'ref', cfg,
        str(ref)
    ], env)
    wd, log = tmp_path / 'signalled', tmp_path / 'job.log'
    script = tmp_path / 'job.sh'
    script.write_text('\n'.join([
        '#!/usr/bin/env bash', '#SBATCH --requeue', '#SBATCH --ntasks=2',
        '#SBATCH --cpus-per-task=1', f'#SBATCH --output={log}',
        '#SBATCH --open-mode=append', f'cd {ROOT}',
        f'ON_SIGNAL=requeue bash tools/slurm_train.sh {slurm.partition} '
        f'sig {signalled} {wd} --resume'
    ]) + '\n')
    job = run(['sbatch', '--parsable', str(script)], env).strip()
    wait_until(lambda: all((wd / f'at_iter_rank{r}').is_file()
                           for r in (0, 1)) or _ended(slurm, job, log))
    slurm.run('scancel', '--signal=USR1', job, check=True)
    start_requeued_now(slurm, job, log)
    wait_until(lambda: job not in slurm.run('squeue', '-h', '-o', '%i').stdout.
               split())
    text = log.read_text()
    assert slurm.job(job)['JobState'] == 'COMPLETED', text[-3000:]
    assert slurm.job(job)['Restarts'] == '1'
    assert (f'CheckpointOnSignalHook: SIGUSR1 (on some rank): saved '
            f'{wd}/iter_3.pth at epoch 2, iteration 3; job {job} requeued; '
            'exiting with status 75') in text, text[-3000:]
    assert 'resumed from a signal checkpoint at iteration 3' in text
    a, _ = toy.load_identical_ranks(ref)
    b, _ = toy.load_identical_ranks(wd)
    toy.assert_same_weights(a['params'], b['params'])


@on_cluster
def test_paired_study_submits_resumes_and_collects(slurm, tmp_path):
    """2 arms (WRS, eps-shifted L2) x 2 seeds, one CPU task a run. The first
    call submits 4 jobs and returns; wrs seed 0 is cancelled after its first
    checkpoint; both shifted runs get the warning signal (``scancel
    --signal=USR1 --batch``, what ``--signal=B:USR1@120`` sends) in
    iteration 5 of 12, in epoch 2: they save, their jobs are requeued
    (``--collect-only`` says so) and resume mid-epoch; the next call
    resubmits only wrs seed 0, resumed; the table and the resumed runs'
    weights equal the local study's, bitwise."""
    signal = dict(
        type='SignalAtIterHook', at=5, mode='outside', only_in_slurm=True)
    cfgs = [
        shrunk(WRS_CFG, tmp_path / 'wrs.py', epochs=3),
        shrunk(SHIFTED_CFG, tmp_path / 'shifted.py', epochs=3, hooks=[signal])
    ]
    tool = [
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis', 'paired_study.py'), *cfgs,
        '--names', 'wrs', 'shifted', '--metric', METRIC, '--seeds', '0', '1'
    ]
    env = tool_env(slurm, GPUS_PER_NODE='0', CPUS_PER_TASK='1')
    study = tmp_path / 'slurm_study'
    slurm_args = [
        '--launcher', 'slurm', '--partition', slurm.partition, '--work-dir',
        str(study)
    ]
    out = run(tool + slurm_args, env)
    with open(study / 'paired_study_manifest.json') as f:
        manifest = {(r['arm'], r['seed']): r for r in json.load(f)}
    assert sorted(manifest) == [('shifted', 0), ('shifted', 1), ('wrs', 0),
                                ('wrs', 1)]
    first = manifest[('wrs', 0)]
    assert first['log'] == str(study / 'wrs' / 'seed0' /
                               'paired_study_train.log')
    assert 'slurm_train.sh' in first['command'] and len(first['job_ids']) == 1
    assert f"wrs seed 0: submitted job {first['job_ids'][0]}" in out
    assert 'runs queued; collect later' in out  # returned, jobs not done

    # cancel wrs seed 0 once its first checkpoint and validation are written
    run0 = study / 'wrs' / 'seed0'
    wait_until(lambda: (run0 / 'last_checkpoint').is_file() and read_curve(
        str(run0), METRIC))
    slurm.run('scancel', first['job_ids'][0], check=True)
    wait_until(lambda: first['job_ids'][0] not in slurm.run(
        'squeue', '-h', '-o', '%i').stdout.split())
    assert not (run0 / 'paired_study_run.json').is_file()
    assert not (run0 / 'epoch_3.pth').is_file()
    # mmengine saves an epoch's checkpoint before its validation: a cancel
    # landing between the two leaves that epoch without a value, which the
    # resumed run (from that checkpoint) does not repeat. scancel's SIGTERM
    # in a training iteration saves iter_N.pth (4 iterations an epoch) and
    # the run stays cancelled; resumed from it, the run ends that iteration's
    # epoch (N = 8: no batch left) and validates it. saved: the last epoch
    # whose validation the resumed run does not repeat
    validated = {step for step, _ in read_curve(str(run0), METRIC)}
    kind, n = re.search(r'(epoch|iter)_(\d+)\.pth',
                        (run0 / 'last_checkpoint').read_text()).groups()
    saved = int(n) if kind == 'epoch' else (int(n) - 1) // 4
    # the shifted runs, in iteration 5, get the warning: save and requeue
    shifted = {s: manifest[('shifted', s)]['job_ids'][0] for s in (0, 1)}
    for s, job in shifted.items():
        log = study / 'shifted' / f'seed{s}' / 'paired_study_train.log'
        wait_until(lambda: (study / 'shifted' / f'seed{s}' / 'at_iter_rank0').
                   is_file() or _ended(slurm, job, log))
        slurm.run('scancel', '--signal=USR1', '--batch', job, check=True)
        wait_requeued(slurm, job, log)
    # collected: the cancelled run failed (exit 1), the requeued ones are
    # named, the others are queued or done, the table holds only what is done
    out = run(tool + slurm_args + ['--collect-only'], env, returncode=1)
    assert '| wrs | 0 | failed (CANCELLED) |' in out, out
    for s in (0, 1):
        assert f'| shifted | {s} | requeued (1 restart) |' in out, out
    with open(study / 'paired_study_manifest.json') as f:
        assert [r['restarts'] for r in json.load(f)
                if r['arm'] == 'shifted'] == [1, 1]
    for s, job in shifted.items():
        start_requeued_now(
            slurm, job,
            study / 'shifted' / f'seed{s}' / 'paired_study_train.log')

    # the next call resubmits wrs seed 0 alone, resumed, and waits
    out = run(tool + slurm_args + ['--wait'], env)
    assert 'wrs seed 0: submitted job' in out
    assert 'resumes from its last checkpoint' in out
    assert out.count('submitted job') == 1, out
    with open(study / 'paired_study_manifest.json') as f:
        again = {(r['arm'], r['seed']): r for r in json.load(f)}
    assert len(again[('wrs', 0)]['job_ids']) == 2
    log = (run0 / 'paired_study_train.log').read_text()
    assert '(resumed)' in log and 'resumed epoch: ' in log, log[-3000:]
    assert out.count('| done |') == 2, out
    assert out.count('| done (1 restart) |') == 2, out
    log = (study / 'shifted' / 'seed0' / 'paired_study_train.log').read_text()
    assert (f"job {shifted[0]} requeued; exiting with status 75" in log
            and '(resumed) restart 1' in log
            and 'resumed from a signal checkpoint at iteration 6' in log), \
        log[-3000:]

    local = tmp_path / 'local_study'
    run(
        tool +
        ['--launcher', 'local', '--jobs', '2', '--work-dir',
         str(local)], tool_env(slurm))
    a, b = (
        json.loads((d / 'paired_study.json').read_text())
        for d in (study, local))
    expected = copy.deepcopy(b['curves'])
    expected['wrs']['0'] = [
        c for c in expected['wrs']['0'] if c[0] in validated or c[0] > saved
    ]
    assert a['arms'] == b['arms'] and a['curves'] == expected
    assert a['arms']['shifted']['vs_baseline']['seeds'] == [0, 1]
    for run_dir in ('wrs/seed0', 'shifted/seed0', 'shifted/seed1'):
        toy.assert_same_weights(
            toy.checkpoint_weights(study / run_dir / 'epoch_3.pth'),
            toy.checkpoint_weights(local / run_dir / 'epoch_3.pth'))
