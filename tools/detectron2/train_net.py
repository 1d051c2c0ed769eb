#!/usr/bin/env python
"""Detectron2's ``tools/train_net.py`` for yacs configs with ``WRS`` keys:
the same flags, ``DefaultTrainer`` with its hooks, checkpoints and COCO
evaluation, plus three lines as Detectron2's projects add theirs:
``add_wrs_config(cfg)`` before the config is read, the optimizer of
``build_wrs_optimizer`` (Detectron2's SGD with the no-decay groups wrs_mm
claims) and the hooks of ``build_wrs_hooks`` (after the learning-rate
scheduler, before the checkpointer and the writers). Adapted from Detectron2
(Apache-2.0, facebookresearch/detectron2 ``tools/train_net.py``).

    python tools/detectron2/train_net.py --config-file \\
        configs/detectron2/faster_rcnn_R_50_FPN_bn_wrs-tau10_1x.yaml
"""
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import (DefaultTrainer, default_argument_parser,
                               default_setup, launch)
from detectron2.evaluation import COCOEvaluator

from wrs_mm.detectron2 import (add_wrs_config, build_wrs_hooks,
                               build_wrs_optimizer)


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with wrs_mm's optimizer and hooks."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return COCOEvaluator(
            dataset_name,
            output_dir=output_folder
            or os.path.join(cfg.OUTPUT_DIR, 'inference'))

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_wrs_optimizer(cfg, model)

    def build_hooks(self):
        ret = super().build_hooks()
        return ret[:2] + build_wrs_hooks(self.cfg) + ret[2:]


def setup(args):
    cfg = get_cfg()
    add_wrs_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


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
