"""What a training loop needs to run wrs_mm's features on its model and
optimizer, whichever framework drives it (mmengine's ``WRSPlugin``,
Detectron2's hooks): one :class:`TrainingPlugin` per optimizer, which owns

* the invariance analysis of the first training forward
  (:func:`wrs_mm.core.classify` on the forward's autograd graph), handed to
  the features that need it in :data:`SETUP_ORDER`. Under ``torch.compile``
  the forward's graph is not a real autograd graph, so the analysis runs
  outside the compiled graph instead, right before that forward: an eager
  forward of the same inputs (:func:`wrs_mm.core.analyze_invariance`;
  buffers and every random generator restored, so training goes on exactly
  as without it). The hooks are removed afterwards (under compile: one
  recompilation). Under ``torch.distributed`` every rank takes rank 0's
  analysis;
* a wrapper of the optimizer's ``step`` (an instance attribute), which calls
  the features' callbacks before and after it in :data:`PRE_STEP_ORDER` /
  :data:`POST_STEP_ORDER`. It wraps whatever ``step`` the optimizer had:
  the class's method, or another instance-level wrapper, such as the one
  torch's LR schedulers (and mmengine's param schedulers built on a torch
  optimizer) install to count steps, whose marks
  (:data:`LR_SCHEDULER_MARKS`) it carries;
* the handles of the forward hooks it installed, and the ``step`` it
  wrapped: :meth:`~TrainingPlugin.remove` removes the hooks and puts that
  very ``step`` back (unless something wrapped the optimizer's ``step``
  again after the plugin: then the plugin's wrapper stays in that chain,
  calling no callback).

Why a wrapper of the torch optimizer's ``step``: it runs exactly on real
optimizer steps, i.e. once per accumulated update, never for an AMP step
skipped for inf / NaN gradients (``GradScaler`` does not call it), and after
``GradScaler`` has unscaled the gradients; and torch's own step hooks are
stripped by torch 2.1's dynamo (see :meth:`TrainingPlugin._wrap_step`).

What the features agree on through the optimizer's param groups is named in
:mod:`wrs_mm.core.param_groups`.
"""
import logging
import types
import weakref
from typing import Callable, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from .compat import MIN_COMPILE, is_compiling, require_torch
from .invariance import (InvarianceRecorder, InvarianceReport,
                         analyze_invariance, classify, loss_tensors)
from .rng import get_rng_states, set_rng_states

SHIFTED_REG = 'shifted_reg'
WEIGHT_RESCALE = 'weight_rescale'
NORM_DYNAMICS = 'norm_dynamics'

#: Who receives the analysis first: the regularizer's weights (chosen by the
#: optimizer config) are claimed before the WRS hook claims its own, so that a
#: weight wanted by both is reported by the hook.
SETUP_ORDER = (SHIFTED_REG, WEIGHT_RESCALE)
#: Before a step: the shifted regularizer adds its gradient, then the norm
#: probe reads the final gradients.
PRE_STEP_ORDER = (SHIFTED_REG, NORM_DYNAMICS)
#: After a step: the norm probe measures the optimizer's step, then WRS
#: rescales the weights.
POST_STEP_ORDER = (NORM_DYNAMICS, WEIGHT_RESCALE)

#: what :func:`check_compile` and the first-forward analysis name on a
#: torch older than :data:`~wrs_mm.core.compat.MIN_COMPILE`
COMPILE_REFUSAL = ("wrs_mm under torch.compile (mmengine's compile=True)",
                   "torch 2.1's dynamo fails on mmengine's compiled "
                   'train_step, with or without wrs_mm; train without '
                   'compile')
#: the marks torch's and mmengine's schedulers look for on
#: ``optimizer.step`` to tell that their step-counting wrapper is still there
#: (torch 2.1 and mmengine: ``_with_counter``; torch >= 2.2:
#: ``_wrapped_by_lr_sched``); without them they warn that ``optimizer.step()``
#: was overridden after the scheduler was built
LR_SCHEDULER_MARKS = ('_with_counter', '_wrapped_by_lr_sched')


class TrainingPlugin:
    """State wrs_mm keeps for one model and its optimizer; see the module doc.

    Args:
        model (nn.Module): the model, unwrapped (not its DDP wrapper).
        optimizer (torch.optim.Optimizer): its optimizer.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model = model
        self.optimizer = optimizer
        self.report: Optional[InvarianceReport] = None
        self._setups: Dict[str, Callable[[InvarianceReport], None]] = {}
        self._pre: Dict[str, Callable[[], None]] = {}
        self._post: Dict[str, Callable[[], None]] = {}
        self._forward_handles: List = []
        #: ``(the step it replaced or None for the class's, the wrapper)``
        self._step: Optional[tuple] = None
        self._recorder: Optional[InvarianceRecorder] = None
        self._analysing = False

    # the analysis -------------------------------------------------------
    def on_analysis(self, feature: str, setup: Callable[[InvarianceReport],
                                                        None]) -> None:
        """Call ``setup(report)`` once the first training forward has been
        analysed (at once if it has been), in :data:`SETUP_ORDER`."""
        if feature not in SETUP_ORDER:
            raise ValueError(f'unknown feature {feature!r}; one of '
                             f'{SETUP_ORDER}')
        if self.report is not None:
            setup(self.report)
            return
        self._setups[feature] = setup
        if not self._forward_handles:
            self._install_forward_hooks()

    def _install_forward_hooks(self) -> None:
        # closures over weak references, not bound methods: a deepcopy of the
        # model (EMA) shares the hooks, which ignore calls on any other module
        ref, target = weakref.ref(self), weakref.ref(self.model)

        def pre(module, args, kwargs):
            compiling = is_compiling()  # first: dynamo folds it
            plugin = ref()
            if plugin is None or module is not target():
                return
            if compiling:
                plugin._analyse_outside_graph(module, args, kwargs)
            else:
                plugin._start_analysis(module)

        def post(module, args, output):
            compiling = is_compiling()
            plugin = ref()
            if plugin is not None and module is target() and not compiling:
                plugin._finish_analysis(module, output)

        pre.wrs_mm_plugin = ref  # what has_analysis_pending looks for
        self._forward_handles = [
            self.model.register_forward_pre_hook(pre, with_kwargs=True),
            self.model.register_forward_hook(post)
        ]

    def _start_analysis(self, model: nn.Module) -> None:
        if (self.report is None and self._recorder is None
                and not self._analysing and model.training):
            self._recorder = InvarianceRecorder(model).__enter__()

    def _finish_analysis(self, model: nn.Module, output) -> None:
        """Classify the parameters from this forward's losses (before any
        backward or step)."""
        if self._recorder is None:
            return
        recorder, self._recorder = self._recorder, None
        recorder.__exit__(None, None, None)
        self._publish(classify(model, loss_tensors(output), recorder))

    @torch.compiler.disable
    def _analyse_outside_graph(self, model: nn.Module, args, kwargs) -> None:
        """Under torch.compile: classify from an eager forward of this
        forward's inputs, run before it (buffers and random generators
        restored)."""
        if self.report is not None or self._analysing or not model.training:
            return
        require_torch(MIN_COMPILE, *COMPILE_REFUSAL)
        self._analysing = True
        rng = get_rng_states()
        try:
            report = analyze_invariance(model, lambda: model(*args, **kwargs))
        finally:
            set_rng_states(rng)
            self._analysing = False
        self._publish(report)

    def _publish(self, report: InvarianceReport) -> None:
        """Hand the report to the features; under DDP every rank takes rank
        0's report."""
        if dist.is_available() and dist.is_initialized() and \
                dist.get_world_size() > 1:
            box = [report]
            dist.broadcast_object_list(box, src=0)
            report = box[0]
        self.report = report
        self._remove(self._forward_handles)
        setups, self._setups = self._setups, {}
        for feature in SETUP_ORDER:
            if feature in setups:
                setups[feature](report)

    # the optimizer step -------------------------------------------------
    def on_step(self,
                feature: str,
                pre: Optional[Callable[[], None]] = None,
                post: Optional[Callable[[], None]] = None) -> None:
        """Call ``pre()`` before and ``post()`` after every real optimizer
        step, in :data:`PRE_STEP_ORDER` / :data:`POST_STEP_ORDER`."""
        for fn, order, table in ((pre, PRE_STEP_ORDER, self._pre),
                                 (post, POST_STEP_ORDER, self._post)):
            if fn is None:
                continue
            if feature not in order:
                raise ValueError(f'{feature!r} has no place in {order}')
            table[feature] = fn
        self._wrap_step()

    def _wrap_step(self) -> None:
        """Call the callbacks around the optimizer's ``step``: an instance
        attribute wrapping the ``step`` it finds (the class's method or
        another wrapper, kept for :meth:`remove`), not torch's
        ``register_step_pre_hook``: torch 2.1's dynamo strips those hooks from
        every ``torch.optim`` class, for the rest of the process, the first
        time anything is compiled (its ``TorchPatcher``), which would leave
        every feature silently off. The wrapper is a bound method, as torch's
        and mmengine's schedulers expect of a ``step`` they wrap later."""
        if self._step is not None:
            return
        before = vars(self.optimizer).get('step')
        inner, ref = self.optimizer.step, weakref.ref(self)

        def step(optimizer, *args, **kwargs):
            plugin = ref()
            if plugin is not None:
                plugin._run(plugin._pre, PRE_STEP_ORDER)
            out = inner(*args, **kwargs)
            if plugin is not None:
                plugin._run(plugin._post, POST_STEP_ORDER)
            return out

        # a scheduler's counting wrapper inside this one still counts
        for mark in LR_SCHEDULER_MARKS:
            if getattr(inner, mark, False):
                setattr(step, mark, True)
        wrapper = types.MethodType(step, self.optimizer)
        self.optimizer.step = wrapper
        self._step = (before, wrapper)

    def _unwrap_step(self) -> None:
        """Put back the ``step`` :meth:`_wrap_step` found, if the wrapper is
        still the optimizer's ``step``; otherwise leave it in the chain of
        whatever wrapped it since (it then calls no callback)."""
        before, wrapper = self._step
        if vars(self.optimizer).get('step') is not wrapper:
            return
        self._step = None
        if before is None:
            del self.optimizer.step  # the class's method again
        else:
            self.optimizer.step = before

    @staticmethod
    @torch.compiler.disable
    def _run(table: dict, order: tuple) -> None:
        """Run eagerly, outside any compiled graph: the callbacks count steps
        and branch on them, which dynamo would otherwise guard on (a
        recompilation per step)."""
        for feature in order:
            fn = table.get(feature)
            if fn is not None:
                fn()

    def remove(self, feature: Optional[str] = None) -> None:
        """Stop calling ``feature`` at optimizer steps (every feature when
        None); when no feature is left, the forward hooks go and the
        optimizer's ``step`` is the one the plugin found again
        (:meth:`_unwrap_step`)."""
        for table in (self._pre, self._post, self._setups):
            if feature is None:
                table.clear()
            else:
                table.pop(feature, None)
        if not (self._pre or self._post) and self._step is not None:
            self._unwrap_step()
        if not self._setups:
            self._remove(self._forward_handles)

    @staticmethod
    def _remove(handles: list) -> None:
        for h in handles:
            h.remove()
        handles.clear()


def log_std(message: str, level: int = logging.INFO) -> None:
    """The features' log where no adapter gives one: Python's ``wrs_mm``
    logger."""
    logging.getLogger('wrs_mm').log(level, message)


def has_analysis_pending(model: nn.Module) -> bool:
    """Whether a :class:`TrainingPlugin` waits for ``model``'s first
    training forward (a feature is attached to it)."""
    return any(
        getattr(h, 'wrs_mm_plugin', None) is not None
        for h in model._forward_pre_hooks.values())
