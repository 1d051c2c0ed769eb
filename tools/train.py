"""Train with an OpenMMLab config; the flags of mmdet's ``tools/train.py``.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options k=v ...] [--launcher pytorch]
        [--on-signal exit|requeue]

``--on-signal`` adds ``CheckpointOnSignalHook``: on ``SIGUSR1`` / ``SIGTERM``
the run saves ``iter_<n>.pth`` at the iteration's end and exits with status
75; with ``requeue`` it first requeues its Slurm job after ``SIGUSR1``
(Slurm's warning; ``SIGTERM`` means cancel or preemption).
"""
import argparse
import sys

from wrs_mm.apis import (add_launch_args, add_signal_hook,
                         allow_full_checkpoint_load, build_runner,
                         close_distributed, load_config, parse_launch_args,
                         prepare_resume)
from wrs_mm.engine import TrainingPreempted


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or with no path from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--on-signal',
        choices=['exit', 'requeue'],
        help='on SIGUSR1 / SIGTERM save iter_<n>.pth at the end of the '
        'iteration, then exit with status 75 (exit), after requeueing the '
        'Slurm job on SIGUSR1 (requeue)')
    add_launch_args(parser)
    return parse_launch_args(parser)


def main():
    args = parse_args()
    allow_full_checkpoint_load()
    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      args.work_dir)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'enable' in cfg.get('auto_scale_lr', {}) and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your'
                               ' configuration file.')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    add_signal_hook(cfg, args.on_signal)
    prepare_resume(cfg)  # bitwise resume: seed, signal checkpoints
    try:
        build_runner(cfg).train()
    except TrainingPreempted as stop:
        return stop.code
    return 0


if __name__ == '__main__':
    status = main()
    close_distributed()  # the runner is gone: its process group is freed
    sys.exit(status)
