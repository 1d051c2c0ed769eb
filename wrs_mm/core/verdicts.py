"""What the invariance analysis says about each parameter.

A :class:`Verdict` is the analysis' answer for one parameter: its class
(``kind``), its independent rows, a :class:`Reason` code and the message that
explains it to a person. :class:`ParamInvariance` is that answer with the
parameter's name and shape, one per parameter of an :class:`InvarianceReport`.

Decisions (the candidates of WRS, whether a weight influences the loss) read
the codes; the messages are for tables and logs only.
"""
import enum
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence


class Reason(enum.Enum):
    """Why a parameter got its verdict: one code per cause the analysis
    tells apart (the value is what records and JSON files hold)."""
    #: invariant: the output goes only into batch-statistics normalisations
    NORMALISED = 'normalised'
    #: invariant: a known weight-standardising layer class
    STANDARDISED_CLASS = 'standardised_class'
    #: invariant: a layer whose forward a probe shows to standardise it
    STANDARDISED_PROBE = 'standardised_probe'
    #: ``requires_grad=False``
    FROZEN = 'frozen'
    #: a bias, a norm's affine parameter or a scale
    ONE_DIM = 'one_dim'
    #: never the weight of a Conv / Linear op in the analysed forward
    NOT_A_LAYER = 'not_a_layer'
    #: its op's output does not reach the loss
    UNUSED = 'unused'
    #: a transposed conv: output channels are not dim 0 of the weight
    TRANSPOSED = 'transposed'
    #: a path from the output to the loss avoids every normalisation
    NOT_ONLY_NORMALISED = 'not_only_normalised'
    #: followed by a normalisation in eval mode (running statistics)
    EVAL_NORM = 'eval_norm'
    #: followed by a normalisation class with frozen statistics
    FROZEN_NORM = 'frozen_norm'
    #: a bias added before a GroupNorm / LayerNorm
    BIAS_BEFORE_NORM = 'bias_before_norm'


#: the codes of weights that do not influence the loss at all
NOT_IN_GRAPH = frozenset((Reason.UNUSED, Reason.NOT_A_LAYER))


@dataclass(frozen=True)
class Verdict:
    """The analysis' answer for one parameter: ``kind`` and ``rows`` as in
    :class:`ParamInvariance`, the ``code`` decisions read, the ``message``
    for a person and, for an invariant weight, its eps terms and the
    normalisations it goes through."""
    kind: str
    rows: int
    code: Reason
    message: str
    eps_error: Optional[float] = None
    rescale_change: Optional[float] = None
    norms: tuple = ()

    @classmethod
    def refused(cls, code: Reason, message: str) -> 'Verdict':
        """A parameter that is not invariant (``kind='none'``, 0 rows)."""
        return cls('none', 0, code, message)


def granularity_of(rows: int, channels: int) -> str:
    """``tensor`` (1 row), ``channel`` (one per output channel) or
    ``group``."""
    if rows == 1:
        return 'tensor'
    return 'channel' if rows == channels else 'group'


@dataclass
class ParamInvariance:
    """The verdict on one parameter.

    ``kind`` is one of ``channel`` (per output channel), ``group`` (per group
    of channels, GroupNorm), ``tensor`` (whole tensor, LayerNorm), ``ws`` (per
    channel scale *and* shift, weight standardisation) or ``none``. ``rows`` is
    the number of independent weight vectors (0 when not invariant).
    ``reason`` explains the verdict to a person; ``code`` is its
    :class:`Reason`, what decisions read.

    Normalisations divide by ``sqrt(var + eps)`` (weight standardisation by
    ``std + eps``), so an invariant weight is invariant only up to eps. At
    the analysed forward's activations, over the weight's channels:

    * ``eps_error``: ``max_j eps / (var_j + eps)`` (``eps / (std_j + eps)``
      for weight standardisation), how much eps weighs against the batch
      variance; a rescale by ``c`` moves the output by about
      ``|c^2 - 1| / 2`` times it;
    * ``rescale_change``: the relative output change a rescale of every row
      to unit norm would cause now, ``max_j |sqrt((var_j + eps) / (var_j +
      s_j^2 eps)) - 1|`` with ``s_j`` the row's norm
      (``|(std_j + eps) / (std_j + s_j eps) - 1|`` for weight
      standardisation).

    Both are None where they cannot be computed (not invariant, or an eps the
    layer does not expose). ``norms`` names the normalisation modules the
    weight's output goes through.
    """
    name: str
    shape: tuple
    kind: str
    rows: int
    reason: str
    code: Reason
    eps_error: Optional[float] = None
    rescale_change: Optional[float] = None
    norms: tuple = ()

    @classmethod
    def of(cls, name: str, shape: tuple,
           verdict: Verdict) -> 'ParamInvariance':
        """The record of parameter ``name`` with its ``verdict``."""
        return cls(name, shape, verdict.kind, verdict.rows, verdict.message,
                   verdict.code, verdict.eps_error, verdict.rescale_change,
                   verdict.norms)

    @property
    def invariant(self) -> bool:
        return self.kind != 'none'

    @property
    def in_graph(self) -> bool:
        """Whether the weight influences the loss at all."""
        return self.code not in NOT_IN_GRAPH

    @property
    def granularity(self) -> Optional[str]:
        return granularity_of(self.rows, self.shape[0]) if self.invariant \
            else None

    def to_json(self) -> dict:
        return dict(
            asdict(self),
            shape=list(self.shape),
            code=self.code.value,
            in_graph=self.in_graph,
            norms=list(self.norms),
            granularity=self.granularity)


def fmt_error(value: Optional[float]) -> str:
    """An eps error or rescale change for a table: ``1.2e-03`` or ``-``."""
    return '-' if value is None else f'{value:.1e}'


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns; the last column is not padded."""
    rows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return '\n'.join('  '.join(c.ljust(w)
                               for c, w in zip(r, widths)) + '  ' + r[-1]
                     for r in rows)


class InvarianceReport(dict):
    """``{param name: ParamInvariance}`` in ``model.named_parameters()``
    order."""

    def invariant(self) -> List[ParamInvariance]:
        return [v for v in self.values() if v.invariant]

    def candidates(self) -> List[ParamInvariance]:
        """Trainable weights of 2 or more dims (what WRS could act on)."""
        return [
            v for v in self.values()
            if len(v.shape) >= 2 and v.code is not Reason.FROZEN
        ]

    def to_json(self) -> List[dict]:
        return [v.to_json() for v in self.values()]

    def table(self, params: Optional[List[ParamInvariance]] = None) -> str:
        return format_table(
            ('parameter', 'shape', 'class', 'granularity', 'eps err',
             'rescale chg', 'reason'),
            [(v.name, 'x'.join(map(str, v.shape)), v.kind, v.granularity
              or '-', fmt_error(v.eps_error), fmt_error(
                  v.rescale_change), v.reason)
             for v in (params if params is not None else self.values())])
