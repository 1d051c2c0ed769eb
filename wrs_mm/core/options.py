"""The options of wrs_mm's hooks and ``shifted_reg``, checked from one table
each: ``{key: (what it accepts, test, error type)}``. A failed test raises
naming ``<owner>.<key>``, what is accepted and the value given, before
anything is built."""
from typing import Callable, Dict, Tuple

Rule = Tuple[str, Callable[[object], bool], type]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def boolean() -> Rule:
    return 'True or False', lambda v: isinstance(v, bool), TypeError


def integer(low: int) -> Rule:
    return f'an integer >= {low}', lambda v: isinstance(
        v, int) and not isinstance(v, bool) and v >= low, ValueError


def one_of(*accepted) -> Rule:
    return f'one of {accepted}', lambda v: v in accepted, ValueError


def at_least(low: float, none: bool = False) -> Rule:
    what = f'>= {low:g}' if not none else f'None or >= {low:g}'

    def ok(v) -> bool:
        return (none and v is None) or (_number(v) and v >= low)

    return what, ok, ValueError


def positive(none: bool = False) -> Rule:
    return ('None or > 0' if none else '> 0'), lambda v: (
        none and v is None) or (_number(v) and v > 0), ValueError


def validate(owner: str, values: dict, rules: Dict[str, Rule]) -> None:
    """Raise the rule's error for the first of ``values`` it refuses."""
    for key, (accepted, ok, error) in rules.items():
        value = values[key]
        if not ok(value):
            raise error(f'{owner}.{key} must be {accepted}, got {value!r}')
