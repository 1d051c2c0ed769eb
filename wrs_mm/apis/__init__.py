"""What the scripts in ``tools/`` build on (mmdet's name for it): mmdet's
launcher flags and config handling (:mod:`.launch`), a model and its training
batches from any config (:mod:`.from_config`), the norm-dynamics figure
(:mod:`.norm_plot`) and paired studies of configs over seeds
(:mod:`.paired_study`, ``tools/analysis/paired_study.py``)."""
from .from_config import build_from_config
from .launch import (add_launch_args, add_signal_hook,
                     allow_full_checkpoint_load, build_runner,
                     close_distributed, load_config, parse_launch_args,
                     prepare_resume, setup_cpu_distributed)
from .norm_plot import plot_norm_dynamics
from .paired_study import Arm, StudyOptions, run_study, write_report

__all__ = [
    'build_from_config', 'add_launch_args', 'allow_full_checkpoint_load',
    'build_runner', 'close_distributed', 'load_config', 'parse_launch_args',
    'prepare_resume', 'add_signal_hook', 'setup_cpu_distributed',
    'plot_norm_dynamics', 'Arm', 'StudyOptions', 'run_study', 'write_report'
]
