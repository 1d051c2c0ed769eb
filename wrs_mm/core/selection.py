"""Which weights a feature acts on: ``include`` / ``exclude`` name patterns
over the invariance report, shared by the WRS hook, the shifted-Lp
constructor and the norm-dynamics hook."""
import re
from typing import List, Optional, Sequence, Union

from .verdicts import InvarianceReport, ParamInvariance

Patterns = Optional[Union[str, Sequence[str]]]


def compile_patterns(value: Patterns, key: str) -> Optional[List[re.Pattern]]:
    """``value`` (a regex or a list of regexes, matched with ``re.search``
    against parameter names) compiled, or a clear error naming ``key``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value) or not value:
        raise TypeError(f'{key} must be a regex string or a non-empty list of '
                        f'them, got {value!r}')
    out = []
    for v in value:
        try:
            out.append(re.compile(v))
        except re.error as e:
            raise ValueError(f'{key}: invalid regex {v!r}: {e}') from None
    return out


def check_patterns_match(include, exclude, names: Sequence[str],
                         owner: str) -> None:
    """Raise if an ``include`` / ``exclude`` pattern matches no parameter
    name (a typo, usually)."""
    for key, patterns in (('include', include), ('exclude', exclude)):
        for p in patterns or ():
            if not any(p.search(n) for n in names):
                raise ValueError(
                    f'{owner}.{key}: pattern {p.pattern!r} matches no '
                    f'parameter of the model (e.g. {", ".join(names[:3])}, '
                    '...)')


def selected(name: str, include, exclude) -> bool:
    """Matched by ``include`` (all when None) and not by ``exclude``."""
    return (include is None or any(p.search(name) for p in include)) \
        and not any(p.search(name) for p in exclude or ())


def select(report: InvarianceReport, include, exclude, owner: str,
           allow_non_invariant: bool) -> List[ParamInvariance]:
    """Candidates (trainable weights of >= 2 dims) chosen by ``include`` (all
    when None) minus ``exclude``. A weight matched by an explicit ``include``
    that is not invariant raises, unless ``allow_non_invariant``."""
    chosen, bad = [], []
    for v in report.candidates():
        if not selected(v.name, include, exclude):
            continue
        if v.invariant:
            chosen.append(v)
        elif include is not None:
            bad.append(v)
    if bad and not allow_non_invariant:
        raise ValueError(
            f'{owner}: these weights are matched by `include` but are not '
            'scale-invariant, so acting on them would change the network '
            'function:\n' + report.table(bad) +
            '\nFix the pattern, or pass allow_non_invariant=True to force it.')
    return chosen + bad
