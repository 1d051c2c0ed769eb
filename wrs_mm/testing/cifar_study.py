"""What the CPU-scale CIFAR-10 studies (``benchmarks/study_*.py``) share:
their scale (:func:`scale`), their command-line options (:func:`add_arguments`)
and how they train their paired studies (:func:`run`)."""
import os.path as osp

from mmengine.config import Config

from ..apis import paired_study
from .paths import data_root
from .small_scale import dataset_class_sizes

#: the studies' scale: at least this many training images a class
MIN_PER_CLASS = 2000
#: ``--smoke``: at most this many training / test images
SMOKE_IMAGES = (450, 250)


def add_arguments(ap, epochs: int, work_dir: str, out: str) -> None:
    """The options every CIFAR study takes, on the ``argparse`` parser
    ``ap``: the scale (``--epochs``, ``--width``, ``--holdout``, ``--smoke``)
    and the runs (``--jobs``, ``--threads``, ``--work-dir``, ``--out``,
    ``--collect-only``)."""
    ap.add_argument(
        '--data-root',
        help='a folder holding cifar10_subset/ (class folders, as the '
        "clone's sample_data/) or cifar-10-batches-py/ (CIFAR-10's own "
        'batches: tools/misc/download_data.py cifar10); default '
        "$WRS_MM_DATA, else the clone's sample_data/ (enough for --smoke "
        'only)')
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
        help=f'at most {SMOKE_IMAGES[0]} training and {SMOKE_IMAGES[1]} test '
        'images, evenly spaced, and at most a fifth of each class held out: '
        'for the tests (seconds a run)')


def run(arms, seeds, args, metric: str) -> dict:
    """:func:`wrs_mm.apis.paired_study.run_study` of ``arms`` as the
    options of :func:`add_arguments` say."""
    return paired_study.run_study(
        arms, seeds,
        paired_study.StudyOptions(
            args.work_dir,
            metric,
            jobs=args.jobs,
            collect_only=args.collect_only,
            env=dict(OMP_NUM_THREADS=str(args.threads))))


def cifar_splits(root: str) -> dict:
    """The CIFAR-10 ``train`` and ``test`` data set configs found under
    ``root``: ``cifar10_subset/`` (``ImageFolderDataset``) or
    ``cifar-10-batches-py/`` (``CIFARDataset``)."""
    if osp.isdir(osp.join(root, 'cifar10_subset')):
        folder = osp.join(root, 'cifar10_subset')
        return {
            split:
            dict(
                type='ImageFolderDataset', data_root=folder, data_prefix=split)
            for split in ('train', 'test')
        }
    if osp.isdir(osp.join(root, 'cifar-10-batches-py')):
        return {
            split: dict(type='CIFARDataset', data_root=root, split=split)
            for split in ('train', 'test')
        }
    raise FileNotFoundError(
        f'--data-root {root} holds neither cifar10_subset/ (class folders) '
        'nor cifar-10-batches-py/: get CIFAR-10 with `python '
        'tools/misc/download_data.py cifar10 --root data` and pass '
        '--data-root data/cifar10')


def scale(cfg: Config, args) -> Config:
    """A shipped classification config at the studies' scale, in place, from
    the options of :func:`add_arguments`: the training images of
    ``--data-root`` (at least :data:`MIN_PER_CLASS` a class; the shipped
    ``cifar10_subset``: 2,000) minus ``holdout`` per class (the validation
    split, tagged ``val``) and all its test images (``test``), both evaluated
    every epoch; the backbone's widths times ``width``; ``epochs`` epochs, lr
    x0.1 at 30 / 60 / 80 % of them; a checkpoint at the end; conv norms
    recorded 4 times an epoch (``NormDynamicsHook``). ``smoke``: see
    :func:`add_arguments` (seconds a run)."""
    width, epochs = args.width, args.epochs
    root = osp.abspath(args.data_root or data_root())
    splits = cifar_splits(root)
    sizes = dataset_class_sizes(splits['train'])
    holdout = min(args.holdout, min(sizes) // 5) if args.smoke \
        else args.holdout
    if not args.smoke and min(sizes) < MIN_PER_CLASS:
        raise SystemExit(
            f'{root}: {min(sizes)} training images a class; the study needs '
            f'{MIN_PER_CLASS} or more (--smoke runs on fewer). Point '
            '--data-root (or WRS_MM_DATA) at a larger cifar10_subset/, or at '
            'CIFAR-10 itself: `python tools/misc/download_data.py cifar10 '
            '--root data`, then --data-root data/cifar10')
    n_train = sum(sizes) - len(sizes) * holdout
    n_test = sum(dataset_class_sizes(splits['test']))
    train = dict(
        splits['train'],
        holdout_per_class=holdout,
        pipeline=cfg.train_pipeline)
    val = dict(
        splits['train'],
        holdout_per_class=holdout,
        holdout=True,
        tag='val',
        pipeline=cfg.test_pipeline)
    test = dict(splits['test'], tag='test', pipeline=cfg.test_pipeline)
    if args.smoke:
        train['indices'] = list(
            range(0, n_train, max(1, n_train // SMOKE_IMAGES[0])))
        test['indices'] = list(
            range(0, n_test, max(1, n_test // SMOKE_IMAGES[1])))
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
