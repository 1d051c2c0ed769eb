"""What the CPU-scale CIFAR-10 studies (``benchmarks/study_*.py``) share:
their scale (:func:`scale`), their command-line options (:func:`add_arguments`)
and how they train their paired studies (:func:`run`)."""
from mmengine.config import Config

from ..apis import paired_study
from .small_scale import cifar_subset_root


def add_arguments(ap, epochs: int, work_dir: str, out: str) -> None:
    """The options every CIFAR study takes, on the ``argparse`` parser
    ``ap``: the scale (``--epochs``, ``--width``, ``--holdout``, ``--smoke``)
    and the runs (``--jobs``, ``--threads``, ``--work-dir``, ``--out``,
    ``--collect-only``)."""
    ap.add_argument('--epochs', type=int, default=epochs)
    ap.add_argument('--width', type=float, default=0.125)
    ap.add_argument(
        '--holdout',
        type=int,
        default=200,
        help='validation images held out per class')
    ap.add_argument('--jobs', type=int, default=2, help='parallel runs')
    ap.add_argument(
        '--threads', type=int, default=1, help='torch threads per run')
    ap.add_argument('--work-dir', default=work_dir)
    ap.add_argument('--out', default=out)
    ap.add_argument('--collect-only', action='store_true')
    ap.add_argument(
        '--smoke',
        action='store_true',
        help='a 1/40 subset, for the tests (seconds a run)')


def run(arms, seeds, args, metric: str) -> dict:
    """:func:`wrs_mm.apis.paired_study.run_study` of ``arms`` as the
    options of :func:`add_arguments` say."""
    return paired_study.run_study(
        arms,
        seeds,
        args.work_dir,
        metric,
        jobs=args.jobs,
        collect_only=args.collect_only,
        env=dict(OMP_NUM_THREADS=str(args.threads)))


def scale(cfg: Config, args) -> Config:
    """A shipped classification config at the studies' scale, in place, from
    the options of :func:`add_arguments`: the 20,000 training images of the
    subset minus ``holdout`` per class (the validation split, tagged ``val``)
    and its 10,000 test images (``test``), both evaluated every epoch; the
    backbone's widths times ``width``; ``epochs`` epochs, lr x0.1 at 30 / 60 /
    80 % of them; a checkpoint at the end; conv norms recorded 4 times an
    epoch (``NormDynamicsHook``). ``smoke``: every 40th training and test
    image (seconds a run)."""
    width, epochs, holdout = args.width, args.epochs, args.holdout
    n_train = 20000 - 10 * holdout
    split = dict(type='ImageFolderDataset', data_root=cifar_subset_root())
    train = dict(
        split,
        data_prefix='train',
        holdout_per_class=holdout,
        pipeline=cfg.train_pipeline)
    val = dict(
        split,
        data_prefix='train',
        holdout_per_class=holdout,
        holdout=True,
        tag='val',
        pipeline=cfg.test_pipeline)
    test = dict(
        split, data_prefix='test', tag='test', pipeline=cfg.test_pipeline)
    if args.smoke:
        train['indices'] = list(range(0, n_train, 40))
        test['indices'] = list(range(0, 10000, 40))
    cfg.model.backbone.width = width
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.train_dataloader.dataset = train
    cfg.val_dataloader.dataset = dict(
        type='ConcatDataset', datasets=[val, test])
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = [
        dict(type='Accuracy', tag='val', prefix='val'),
        dict(type='Accuracy', tag='test', prefix='test')
    ]
    cfg.test_evaluator = cfg.val_evaluator
    _epoch_schedule(cfg, epochs)
    steps = -(-len(train.get('indices', range(n_train))) //
              cfg.train_dataloader.batch_size)
    cfg.custom_hooks = cfg.get('custom_hooks', []) + [
        dict(
            type='NormDynamicsHook',
            interval=max(1, steps // 4),
            include=r'^backbone\..*weight$')
    ]
    return cfg


def _epoch_schedule(cfg: Config, epochs: int) -> None:
    """``epochs`` epochs validated each, lr x0.1 at 30 / 60 / 80 % of them
    (the paper's 60 / 120 / 160 of 200); the final weights saved, for
    ``tools/analysis/isp_sparsity.py``."""
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=1)
    cfg.param_scheduler = [
        dict(
            type='MultiStepLR',
            by_epoch=True,
            milestones=[round(epochs * f) for f in (.3, .6, .8)],
            gamma=0.1)
    ]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs)
    cfg.default_hooks.logger.interval = 50
