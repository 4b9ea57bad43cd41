"""One check for every number a user gives kseg: finite, and inside its range.

Used by the CLI's option type (`kseg.cli.params.Number`), by `TrainConfig` for values from
YAML files and Python, and by parsers of compound options such as `--tta scales=...`.
"""

import math

from kseg.errors import KsegError


def describe_range(low=None, high=None, min_open=False, max_open=False):
    """"(0, 1]"-style text for a range; None bounds are infinite."""
    left = "(" if min_open else "["
    right = ")" if max_open else "]"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{left}{low_text}, {high_text}{right}"


def number_problem(number, low=None, high=None, min_open=False, max_open=False):
    """What is wrong with `number` (a str), or None when it is finite and in range."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return f"{str(number)[:40]!r} is not a number"
    if not math.isfinite(number):
        return f"{number} is not a finite number"
    if (low is not None and (number < low or (min_open and number == low))) or (
        high is not None and (number > high or (max_open and number == high))
    ):
        return f"{number:g} is not in {describe_range(low, high, min_open, max_open)}"
    return None


def check_number(value, name, low=None, high=None, min_open=False, max_open=False, integer=False):
    """Returns `value` as a float (int if `integer`) or raises a `KsegError` naming `name`.

    Args:
        value: number or str. What the user gave.
        name: str. The option or key, for the message (e.g. "--tta scales").
        low, high: float or None. Bounds (None: unbounded).
        min_open, max_open: bool. Whether a bound itself is excluded.
        integer: bool. Only whole numbers.
    """
    number = value
    if isinstance(value, str):
        try:
            number = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            raise KsegError(
                f"{name}: {value[:40]!r} is not {'a whole number' if integer else 'a number'}"
            ) from None
    if integer and isinstance(number, float) and number.is_integer():
        number = int(number)
    if integer and (isinstance(number, bool) or not isinstance(number, int)):
        raise KsegError(f"{name}: {str(value)[:40]!r} is not a whole number")
    problem = number_problem(number, low, high, min_open, max_open)
    if problem:
        raise KsegError(f"{name}: {problem}")
    return int(number) if integer else float(number)
