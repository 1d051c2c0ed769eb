"""The options of wrs_mm's hooks and ``shifted_reg``, checked from one table
each: ``{key: (what it accepts, test)}``. A failed test raises naming
``<owner>.<key>``, what is accepted and the value given, before anything is
built."""
from typing import Callable, Dict, Tuple

Rule = Tuple[str, Callable[[object], bool]]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def boolean() -> Rule:
    return 'True or False', lambda v: isinstance(v, bool)


def integer(low: int) -> Rule:
    return f'an integer >= {low}', lambda v: isinstance(
        v, int) and not isinstance(v, bool) and v >= low


def one_of(*accepted) -> Rule:
    return f'one of {accepted}', lambda v: v in accepted


def at_least(low: float, none: bool = False) -> Rule:
    what = f'>= {low:g}' if not none else f'None or >= {low:g}'
    return what, lambda v: (none and v is None) or (_number(v) and v >= low)


def positive(none: bool = False) -> Rule:
    return ('None or > 0' if none else
            '> 0'), lambda v: (none and v is None) or (_number(v) and v > 0)


def validate(owner: str, values: dict, rules: Dict[str, Rule]) -> None:
    """Raise for the first of ``values`` that its rule refuses (``TypeError``
    for a non-boolean where a boolean is expected, else ``ValueError``)."""
    for key, (accepted, ok) in rules.items():
        value = values[key]
        if not ok(value):
            error = TypeError if accepted == 'True or False' else ValueError
            raise error(f'{owner}.{key} must be {accepted}, got {value!r}')
