#!/usr/bin/env python
"""Detectron2's ``tools/lazyconfig_train_net.py`` with the hooks of
``train.hooks``: the same flags (``--config-file``, ``--resume``,
``--eval-only``, ``--num-gpus``, ``--dist-url``, ``opts``), the same
trainer, checkpointer and evaluation, plus every hook the config lists
under ``train.hooks`` (``L(WeightRescaleHook)(...)``,
``L(NormDynamicsHook)(...)``, ...), registered after the learning-rate
scheduler and before the checkpointer and the writers, so that their state
is in every checkpoint and their scalars in every log line.

Detectron2's own script registers a fixed list of hooks, which a config
cannot extend ("implement a new train_net.py to handle them", its
docstring says); this is that script. Adapted from Detectron2
(Apache-2.0, facebookresearch/detectron2 ``tools/lazyconfig_train_net.py``).

    python tools/detectron2/lazyconfig_train_net.py --config-file \\
        configs/detectron2/mask_rcnn_R_50_FPN_bn_wrs-tau10_lsj.py
"""
import logging

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (AMPTrainer, SimpleTrainer,
                               default_argument_parser, default_setup,
                               default_writers, hooks, launch)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

logger = logging.getLogger('detectron2')


def do_test(cfg, model):
    if 'evaluator' in cfg.dataloader:
        ret = inference_on_dataset(model, instantiate(cfg.dataloader.test),
                                   instantiate(cfg.dataloader.evaluator))
        print_csv_format(ret)
        return ret


def do_train(args, cfg):
    model = instantiate(cfg.model)
    logger.info('Model:\n{}'.format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)

    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(
        model, train_loader, optim)
    checkpointer = DetectionCheckpointer(
        model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        *instantiate(cfg.train.get('hooks', [])),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(
            default_writers(cfg.train.output_dir, cfg.train.max_iter),
            period=cfg.train.log_period) if comm.is_main_process() else None,
    ])

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if args.resume and checkpointer.has_checkpoint():
        # the checkpoint stores the iteration that just finished
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    trainer.train(start_iter, cfg.train.max_iter)


def main(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    default_setup(cfg, args)

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model)
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        print(do_test(cfg, model))
    else:
        do_train(args, cfg)


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, ))


if __name__ == '__main__':
    invoke_main()
