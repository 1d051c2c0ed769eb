"""Run the invariance analysis on the first real training forward of a model.

The analysis needs one training forward; the run already makes one, so nothing
extra is computed: a forward pre-hook on the model starts the
:class:`~wrs_mm.core.InvarianceRecorder`, the forward hook classifies the
parameters from the returned losses' autograd graph, before any backward or
optimizer step. Under DDP the report of rank 0 is broadcast, so every rank acts
on the same weights. Subscribers (the WRS hook, the shifted-Lp constructor) are
called in priority order with the report.
"""
import weakref
from typing import Callable, List, Tuple

from mmengine.dist import broadcast_object_list, get_world_size
from mmengine.model import is_model_wrapper
from torch import nn

from ..core import InvarianceRecorder, InvarianceReport, classify, loss_tensors

_PROBES: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()


class FirstForwardAnalysis:
    """Shares one :class:`InvarianceReport` per model; see the module doc."""

    def __init__(self, model: nn.Module):
        self.report: InvarianceReport = None
        self._listeners: List[Tuple[int, Callable]] = []
        self._recorder = None
        ref = weakref.ref(self)
        target = weakref.ref(model)

        # plain closures (not bound methods): a deepcopy of the model (EMA)
        # shares them and they ignore calls on any module but ``model``
        def pre(module, args, kwargs=None):
            probe = ref()
            if probe is not None and module is target():
                probe._start(module)

        def post(module, args, output):
            probe = ref()
            if probe is not None and module is target():
                probe._finish(module, output)

        self._handles = [
            model.register_forward_pre_hook(pre),
            model.register_forward_hook(post)
        ]

    def subscribe(self, callback: Callable[[InvarianceReport], None],
                  priority: int = 50) -> None:
        """Call ``callback(report)`` once the analysis is done (at once if it
        already is); lower ``priority`` first."""
        if self.report is not None:
            callback(self.report)
        else:
            self._listeners.append((priority, callback))
            self._listeners.sort(key=lambda x: x[0])

    def _start(self, model: nn.Module) -> None:
        if self.report is None and self._recorder is None and model.training:
            self._recorder = InvarianceRecorder(model).__enter__()

    def _finish(self, model: nn.Module, output) -> None:
        if self._recorder is None:
            return
        rec, self._recorder = self._recorder, None
        rec.__exit__(None, None, None)
        report = classify(model, loss_tensors(output), rec)
        if get_world_size() > 1:
            box = [report]
            broadcast_object_list(box, src=0)
            report = box[0]
        self.report = report
        for h in self._handles:
            h.remove()
        for _, callback in self._listeners:
            callback(report)
        self._listeners.clear()


def first_forward_analysis(model: nn.Module) -> FirstForwardAnalysis:
    """The (single) :class:`FirstForwardAnalysis` of ``model`` (unwrapped)."""
    if is_model_wrapper(model):
        model = model.module
    if model not in _PROBES:
        _PROBES[model] = FirstForwardAnalysis(model)
    return _PROBES[model]
