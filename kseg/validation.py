"""One check for every number a user gives kseg: finite, and inside its range.

Used by the CLI's option type (`kseg.cli.params.Number`), by `TrainConfig` for values from
YAML files and Python, and by parsers of compound options such as `--tta scales=...`.
"""

import math
import os
import sys
import threading

from kseg.errors import KsegError
from kseg.files import brief


def _text(number):
    """A number as messages show it: a whole number in full (up to 20 digits), others to
    15 digits, so that a value just outside a bound never reads as the bound itself."""
    return str(number) if isinstance(number, int) and abs(number) < 10**20 else f"{number:.15g}"


def describe_range(low=None, high=None, min_open=False, max_open=False):
    """"(0, 1]"-style text for a range; None bounds are infinite."""
    low_text = "-inf" if low is None else _text(low)
    high_text = "inf" if high is None else _text(high)
    return f"{'(' if min_open else '['}{low_text}, {high_text}{')' if max_open else ']'}"


def number_problem(number, low=None, high=None, min_open=False, max_open=False):
    """What is wrong with `number` (a str), or None when it is finite and in range."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return f"{str(number)[:40]!r} is not a number"
    if isinstance(number, int) and abs(number) > sys.float_info.max:  # as a float it would overflow
        return f"{str(number)[:40]}... has too many digits"
    if not math.isfinite(number):
        return f"{number} is not a finite number"
    if (low is not None and (number < low or (min_open and number == low))) or (
        high is not None and (number > high or (max_open and number == high))
    ):
        return f"{_text(number)} is not in {describe_range(low, high, min_open, max_open)}"
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


def parse_size(text, name, low=1, high=32768, square=False):
    """Parses a size "HxW" (or [H, W]) into (height, width), each a whole number in [low, high].

    The one parser for every size a user gives (`--tile`, `--input-size`, `--crop`,
    `data synth --size`): "512x1024", "512X1024", "512*1024" and "512,1024" are accepted;
    with `square`, a single number means a square.

    Args:
        text: str, or a pair of ints (from YAML).
        name: str. The option or key, for messages.
        low, high: int. The smallest and largest side accepted.
        square: bool. Accept one number for both sides.

    Raises:
        KsegError: naming `name` and the value (bounded), e.g. for "inf", "0x5", "99999999x2".
    """
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [part.strip() for part in str(text).strip().lower().replace("*", "x").replace(",", "x").split("x")]
    if square and len(parts) == 1:
        parts = parts * 2
    example = f"{max(low, 512)}x{max(low, 1024)}" if high >= 1024 else f"{low}x{low}"
    sizes = [int(part) if isinstance(part, str) and part.isascii() and part.isdigit() and len(part) <= 9
             else part for part in parts]
    if len(sizes) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) for side in sizes):
        raise KsegError(f"{name}: expected HEIGHTxWIDTH in pixels such as {example}. Received: {brief(text)}")
    if not all(low <= side <= high for side in sizes):
        raise KsegError(f"{name}: each side must be {low} to {high} pixels. Received: {brief(text)}")
    return tuple(sizes)


def seconds_from_environment(variable, default):
    """A deadline in seconds from the environment variable `variable` (`default` when unset).
    One longer than the system can wait (`threading.TIMEOUT_MAX`, some 292 years) is that
    long, so "1e12" means no deadline rather than an OverflowError in the wait.

    Raises:
        KsegError: the value is not a number of seconds above 0.
    """
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        return min(check_number(text, variable, low=0, min_open=True), threading.TIMEOUT_MAX)
    except KsegError:
        raise KsegError(f"{variable}={text[:40]!r}: expected a number of seconds above 0") from None
