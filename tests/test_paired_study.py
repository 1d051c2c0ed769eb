"""tools/analysis/paired_study.py three ways: collecting work dirs the test
makes, training smoke configs locally through tools/train.py, and printing
the commands of the distributed and slurm launchers."""
import json
import os
import shlex
import statistics
import subprocess
import sys

import pytest
from mmengine.config import Config
from scipy import stats

from wrs_mm.apis import paired_study as ps
from wrs_mm.apis.paired_study import paired_difference
from wrs_mm.testing import repo_root
from wrs_mm.testing import small_scale as C

ROOT = repo_root()
TOOL = os.path.join(ROOT, 'tools', 'analysis', 'paired_study.py')
WD_CFG = os.path.join(ROOT, 'configs', 'classification',
                      'vgg16-bn_adamw-wd_1xb100-200e_cifar10.py')


def _tool(*args, ok=True):
    res = subprocess.run([sys.executable, TOOL, *args],
                         capture_output=True,
                         text=True,
                         cwd=ROOT,
                         env=dict(
                             os.environ,
                             TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1',
                             OMP_NUM_THREADS='1'),
                         timeout=900)
    if ok:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _fake_run(root, arm, seed, values):
    """An mmengine work dir whose scalars.json holds a top-1 curve (and the
    training-loss lines mmengine writes between evaluations)."""
    d = root / arm / f'seed{seed}' / '20260101_000000' / 'vis_data'
    d.mkdir(parents=True)
    with open(d / 'scalars.json', 'w') as f:
        for epoch, v in enumerate(values, 1):
            f.write(json.dumps(dict(loss=1. / epoch, step=epoch * 10)) + '\n')
            f.write(json.dumps({'test/top1': v, 'step': epoch}) + '\n')


def test_collect_only_on_existing_work_dirs(tmp_path):
    base = {0: 60.1, 1: 61.5, 2: 59.0, 3: 62.2}
    other = {0: 61.0, 1: 61.0, 2: 60.5, 3: 63.9}
    for s in base:
        _fake_run(tmp_path, 'wd', s, [30., base[s]])
        _fake_run(tmp_path, 'wrs', s, [31., other[s]])
    res = _tool('a/wd.py', 'b/wrs.py', '--metric', 'test/top1', '--seeds', '0',
                '1', '2', '3', '--work-dir', str(tmp_path), '--collect-only')
    summary = json.loads((tmp_path / 'paired_study.json').read_text())
    p = summary['arms']['wrs']['vs_baseline']
    d = [other[s] - base[s] for s in base]
    half = stats.t.ppf(0.975, 3) * statistics.stdev(d) / 2
    assert p['diffs'] == pytest.approx(d)
    assert p['mean'] == pytest.approx(statistics.mean(d))
    assert p['ci95'] == pytest.approx([p['mean'] - half, p['mean'] + half])
    assert (p['wins'], p['ties'], p['losses']) == (3, 0, 1)
    assert summary['arms']['wd']['values'] == {
        str(s): v
        for s, v in base.items()
    }
    assert summary['curves']['wrs']['2'] == [[1, 31.], [2, other[2]]]
    md = (tmp_path / 'paired_study.md').read_text()
    assert f"| wrs | 4 | {statistics.mean(other.values()):.2f}" in md
    assert '3 / 0 / 1' in md and '| wrs |' in res.stdout
    assert (tmp_path / 'paired_study_curves.png').stat().st_size > 10000
    # a missing baseline is an error, not an empty report
    res = _tool(
        'a/x.py',
        'b/y.py',
        '--metric',
        'test/top1',
        '--work-dir',
        str(tmp_path),
        '--collect-only',
        ok=False)
    assert res.returncode == 1 and "no results for the baseline 'x'" in \
        res.stderr


def test_paired_difference_uses_common_seeds_only():
    p = paired_difference({0: 2., 1: 3., 2: 5.}, {1: 1., 2: 1., 3: 9.})
    assert p['seeds'] == [1, 2] and p['diffs'] == [2., 4.]
    one = paired_difference({0: 2.}, {0: 1.})
    assert one['mean'] == 1. and one['ci95'][0] != one['ci95'][0]  # NaN


def test_markdown_table_says_na_for_an_arm_with_one_paired_seed():
    summary = ps.summarize(
        dict(wd={
            0: 90.,
            1: 91.
        }, wrs={
            0: 92.,
            1: 92.
        }, wrs_fc={0: 89.}), 'wd', 'test/top1')
    rows = {
        r.split(' | ')[0].strip('| '): r
        for r in ps.markdown_table(summary).splitlines()[2:]
    }
    assert '| n/a (1 seed) | 0 / 0 / 1 |' in rows['wrs_fc'], rows
    assert 'nan' not in ps.markdown_table(summary)
    assert '+1.50 [' in rows['wrs'], rows


def test_arms_with_their_own_seeds_and_reused_runs(tmp_path):
    """An arm's own seeds decide which of its runs a study trains and
    counts; reuse_runs adds an earlier study's runs this one lacks and
    measures the runs both have."""
    for s, v in ((0, 60.), (1, 61.), (2, 62.)):
        _fake_run(tmp_path, 'wd', s, [30., v])
    _fake_run(tmp_path, 'wrs', 0, [31., 63.])
    _fake_run(tmp_path, 'wrs', 1, [31., 99.])  # not one of its seeds
    cfg = Config(dict(model=dict(type='X'), randomness=dict(seed=0)))
    wd = ps.dump_arm('wd', cfg, str(tmp_path / 'study'))
    assert Config.fromfile(wd.config).model.type == 'X'
    assert wd.config == str(tmp_path / 'study' / 'configs' / 'wd.py')
    wrs = ps.Arm('wrs', wd.config, seeds=[0])
    dry = ps.run_study([wd, wrs], [0, 1, 2],
                       ps.StudyOptions(
                           str(tmp_path), 'test/top1', dry_run=True),
                       log=lambda _: None)
    assert [c.split('randomness.seed=')[1]
            for c in dry['commands']] == ['0', '1', '2', '0']
    got = ps.run_study([wd, wrs], [0, 1, 2],
                       ps.StudyOptions(
                           str(tmp_path), 'test/top1',
                           collect_only=True))['curves']
    assert {
        a: sorted(c)
        for a, c in got.items()
    } == {
        'wd': [0, 1, 2],
        'wrs': [0]
    }
    earlier = {'wrs': {0: [[1, 31.], [2, 63.5]], 2: [[1, 30.], [2, 64.]]}}
    merged, reproduced = ps.reuse_runs(got, earlier)
    assert reproduced == {'wrs_seed0': 0.5}
    assert merged['wrs'] == {0: got['wrs'][0], 2: earlier['wrs'][2]}
    assert sorted(got['wrs']) == [0]  # the study's own curves stay as they are
    assert ps.final_values(merged) == {
        'wd': {
            0: 60.,
            1: 61.,
            2: 62.
        },
        'wrs': {
            0: 63.,
            2: 64.
        }
    }
    with pytest.raises(ValueError, match='at least one seed to every arm'):
        ps.run_study([wd, ps.Arm('none', wd.config, seeds=[])], [0],
                     ps.StudyOptions(str(tmp_path), 'test/top1', dry_run=True))


@pytest.mark.heavy
def test_local_launcher_trains_smoke_configs(tmp_path):
    """A shipped config shrunk to 100 images, its no-decay variant and a
    variant that cannot build, on two seeds through tools/train.py: the
    values come from the runs' own logs, the broken arm is reported as
    failed, and finished runs are not trained again."""
    cfg = Config.fromfile(WD_CFG)
    C.shrink_cls(
        cfg,
        tmp_path / 'unused',
        images=(100, 50),
        epochs=1,
        batch_size=25,
        width=0.0625)
    cfg.val_evaluator = dict(type='Accuracy', prefix='test')
    cfg.test_evaluator = cfg.val_evaluator
    path = str(tmp_path / 'tiny.py')
    cfg.dump(path)
    runs = tmp_path / 'runs'
    args = [
        path, '--names', 'wd', '--variant', 'nowd',
        'optim_wrapper.optimizer.weight_decay=0.', '--variant', 'broken',
        'model.backbone.arch=vgg19', '--metric', 'test/top1', '--seeds', '0',
        '1', '--jobs', '2', '--work-dir',
        str(runs)
    ]
    res = _tool(*args, ok=False)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'broken seed 0: FAILED' in res.stdout
    summary = json.loads((runs / 'paired_study.json').read_text())
    assert sorted(summary['arms']) == ['nowd', 'wd']
    assert {(f['arm'], f['seed'])
            for f in summary['failed']} == {('broken', 0), ('broken', 1)}
    for arm in ('wd', 'nowd'):
        for s in (0, 1):
            run = runs / arm / f'seed{s}'
            stamp, = [d for d in os.listdir(run) if (run / d).is_dir()]
            with open(run / stamp / 'vis_data' / 'scalars.json') as f:
                top1 = [json.loads(x)['test/top1'] for x in f if 'top1' in x]
            assert summary['arms'][arm]['values'][str(s)] == top1[-1]
            cfg_dump = Config.fromfile(str(run / 'tiny.py'))
            assert cfg_dump.randomness.seed == s
            wd = cfg_dump.optim_wrapper.optimizer.weight_decay
            assert wd == (0. if arm == 'nowd' else 5e-4)
            assert (run / 'paired_study_run.json').is_file()
    # the same seed: the same initial weights, so only the decay differs;
    # a second call trains only the broken arm again
    res = _tool(*args, ok=False)
    assert res.stdout.count('FAILED') == 2
    assert 'wd seed 0: test/top1' not in res.stdout


def test_launcher_dry_runs_print_the_commands(tmp_path):
    cfg = os.path.join(ROOT, 'configs', 'yolov3',
                       'yolov3_d53-bn_wd_1xb8-ms-320-640-100e-cos_coco.py')
    wrs = cfg.replace('_wd_', '_wrs-tau10_')
    common = [
        cfg, wrs, '--names', 'wd', 'wrs', '--metric', 'coco/bbox_mAP',
        '--seeds', '0', '1', '2', '--work-dir',
        str(tmp_path), '--dry-run'
    ]
    res = _tool(*common, '--launcher', 'slurm', '--partition', 'gpu', '--gpus',
                '8')
    lines = [shlex.split(x) for x in res.stdout.strip().splitlines()]
    assert len(lines) == 6
    first = lines[0]
    assert first[:2] == ['bash', os.path.join(ROOT, 'tools', 'slurm_train.sh')]
    assert first[2:5] == ['gpu', 'wd_seed0', cfg]
    assert first[5] == str(tmp_path / 'wd' / 'seed0')
    assert first[6:] == ['--cfg-options', 'randomness.seed=0']
    assert lines[5][4] == wrs and lines[5][-1] == 'randomness.seed=2'
    res = _tool(*common, '--launcher', 'pytorch', '--gpus', '8',
                '--cfg-options', 'train_cfg.max_epochs=1')
    first = shlex.split(res.stdout.splitlines()[0])
    assert first[1].endswith('tools/dist_train.sh')
    assert first[2:4] == [cfg, '8']
    assert first[4:6] == ['--work-dir', str(tmp_path / 'wd' / 'seed0')]
    assert first[6:] == [
        '--cfg-options', 'randomness.seed=0', 'train_cfg.max_epochs=1'
    ]
    assert not list(tmp_path.iterdir())  # nothing ran
    res = _tool(*common, '--launcher', 'slurm', ok=False)
    assert res.returncode != 0 and 'needs a partition' in res.stderr


def test_slurm_job_script_asks_what_slurm_train_sh_asks():
    """On a GPU partition (8 GPUs a node, 16 tasks) and a CPU one
    (GPUS_PER_NODE=0): the sbatch resources, the resume and the done file."""
    from wrs_mm.apis.paired_study.slurm_jobs import job_script, slurm_resources
    cmd = [
        'bash', 'tools/slurm_train.sh', 'gpu', 'wd_seed0', 'a.py', '/wd',
        '--cfg-options', 'randomness.seed=0'
    ]
    gpu = slurm_resources(16, {})
    assert gpu == dict(
        GPUS='16', GPUS_PER_NODE='8', TASKS_PER_NODE='8', CPUS_PER_TASK='5')
    text = job_script(cmd, 'wd_seed0', 'gpu', gpu, '/wd/log', '/wd/done',
                      '/wd')
    for line in ('#SBATCH --ntasks=16', '#SBATCH --ntasks-per-node=8',
                 '#SBATCH --cpus-per-task=5', '#SBATCH --gres=gpu:8',
                 '#SBATCH --partition=gpu', '#SBATCH --output=/wd/log',
                 'export GPUS_PER_NODE=8',
                 'if [ -f /wd/last_checkpoint ]; then RESUME=--resume',
                 'bash tools/slurm_train.sh gpu wd_seed0 a.py /wd $RESUME '
                 '--cfg-options randomness.seed=0'):
        assert line in text, line
    assert text.rstrip().endswith('> /wd/done')
    cpu = slurm_resources(2, dict(GPUS_PER_NODE='0', CPUS_PER_TASK='1'))
    assert cpu['TASKS_PER_NODE'] == '2' and cpu['GPUS_PER_NODE'] == '0'
    text = job_script(cmd, 'x', 'cpu', cpu, '/l', '/d', '/wd')
    assert '--gres' not in text and '#SBATCH --ntasks-per-node=2' in text
    assert '--requeue' not in text and 'trap' not in text
    # with a signal time: requeued on the warning, which the batch shell
    # passes to the tasks while it waits for them
    text = job_script(cmd, 'x', 'cpu', cpu, '/l', '/d', '/wd', 90)
    for line in ('#SBATCH --requeue', '#SBATCH --signal=B:USR1@90',
                 'export ON_SIGNAL=requeue',
                 'trap \'scancel --signal=USR1 "$SLURM_JOB_ID"\' USR1',
                 '--cfg-options randomness.seed=0 &'):
        assert line in text, line
    assert '"${SLURM_RESTART_COUNT:-0}" > /d' in text
    # one GPU on an 8-GPU node: per-node counts capped at the run's
    assert slurm_resources(1, {})['TASKS_PER_NODE'] == '1'
    with pytest.raises(ValueError, match='GPUS_PER_NODE, TASKS_PER_NODE'):
        slurm_resources(2, dict(GPUS_PER_NODE='two'))
    with pytest.raises(ValueError, match='CPUS_PER_TASK >= 1'):
        slurm_resources(2, dict(CPUS_PER_TASK='0'))


def test_run_states_name_requeues_and_restarts():
    """A queued job waiting after a restart is ``requeued``; restarts are
    counted in every state; a bad signal time is refused."""
    from wrs_mm.apis.paired_study import RunState, RunStatus, StudyOptions
    from wrs_mm.apis.paired_study.runs import queued_state
    from wrs_mm.apis.paired_study.slurm_jobs import SlurmJob
    assert queued_state(SlurmJob('PENDING', 1)) is RunState.REQUEUED
    assert queued_state(SlurmJob('PENDING')) is RunState.PENDING
    assert queued_state(SlurmJob('RUNNING', 2)) is RunState.RUNNING
    assert RunState.REQUEUED.queued

    def detail(state, slurm=None, restarts=0):
        return RunStatus('a', 0, state, '7', 'log', slurm, restarts).detail

    assert detail(RunState.REQUEUED, 'PENDING', 1) == 'requeued (1 restart)'
    assert detail(RunState.DONE, None, 2) == 'done (2 restarts)'
    assert detail(RunState.FAILED, 'TIMEOUT',
                  1) == 'failed (TIMEOUT, 1 restart)'
    assert detail(RunState.DONE) == 'done'
    with pytest.raises(ValueError, match='--signal-time must be'):
        StudyOptions('wd', 'acc', signal_time=-1)


def test_slurm_rendezvous_from_slurm_environment():
    """--launcher slurm on CPU: rank, world size, local rank and port from
    srun's variables (the master address from the node list on the
    cluster, tests/test_slurm.py); the port the job's own, below the
    ephemeral range; outside srun, an error naming them."""
    from wrs_mm.apis.launch import slurm_dist_env
    env = dict(
        SLURM_JOB_ID='41857',
        SLURM_PROCID='3',
        SLURM_NTASKS='4',
        SLURM_LOCALID='1',
        SLURM_NODELIST='node[1-2]',
        MASTER_ADDR='node1')
    assert slurm_dist_env(env) == dict(
        RANK='3',
        WORLD_SIZE='4',
        LOCAL_RANK='1',
        MASTER_ADDR='node1',
        MASTER_PORT='11857')
    ports = {
        int(slurm_dist_env(dict(env, SLURM_JOB_ID=str(j)))['MASTER_PORT'])
        for j in range(100000, 110000)
    }
    assert len(ports) == 10000 and 10000 <= min(ports) < max(ports) < 32768
    assert slurm_dist_env(dict(env, MASTER_PORT='23456'))['MASTER_PORT'] == \
        '23456'
    with pytest.raises(
            RuntimeError, match=r"\['SLURM_JOB_ID', 'SLURM_PROCID'.*srun"):
        slurm_dist_env({})
