"""Test (evaluate) a checkpoint; the flags of mmdet's ``tools/test.py``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show] [--show-dir DIR] [--wait-time S] [--tta]
        [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse

from mmengine.evaluator import DumpResults

from wrs_mm.apis import (add_launch_args, allow_full_checkpoint_load,
                         build_runner, close_distributed, load_config,
                         parse_launch_args)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file '
        'containing evaluation metrics')
    parser.add_argument(
        '--out', type=str, help='dump predictions to a pickle file')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images '
        'will be saved')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation (tta_model and '
        'tta_pipeline of the config)')
    add_launch_args(parser)
    return parse_launch_args(parser)


def main():
    args = parse_args()
    allow_full_checkpoint_load()
    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        vis = cfg.default_hooks.get('visualization')
        if vis is None:
            raise KeyError('--show / --show-dir need '
                           'default_hooks.visualization in the config')
        vis.draw = True
        vis.show = args.show
        vis.wait_time = args.wait_time
        if args.show_dir:
            # DetVisualizationHook calls it test_out_dir, SegVisualizationHook
            # writes under the work dir's vis_data
            vis.test_out_dir = args.show_dir
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise KeyError('--tta needs tta_model and tta_pipeline in the '
                           'config')
        cfg.model = dict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    runner = build_runner(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must be a .pkl file')
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
    close_distributed()  # the runner is gone: its process group is freed
