"""Option types shared by the verbs: numbers that must be finite and in range, sizes.

Click's `float` accepts "inf" and "nan", and its `FloatRange` lets NaN through (every
comparison with NaN is false). `Number` refuses both and checks the range while the
options are parsed, before any file is read or any model is built.
"""

import click

from kseg.errors import KsegError
from kseg.validation import check_number, describe_range, parse_size


class Number(click.ParamType):
    """A finite number in a range: `Number(0, 1, min_open=True)` accepts (0, 1].

    Args:
        low, high: float or None. Bounds; None for no bound.
        min_open, max_open: bool. Whether the bound itself is excluded.
        integer: bool. Whole numbers only (returned as int).
    """

    def __init__(self, low=None, high=None, min_open=False, max_open=False, integer=False):
        self.bounds = dict(low=low, high=high, min_open=min_open, max_open=max_open)
        self.integer = integer
        self.name = "integer" if integer else "number"  # the metavar, upper-cased by click

    def convert(self, value, param, ctx):
        try:
            return check_number(value, "value", integer=self.integer, **self.bounds)
        except KsegError as error:
            self.fail(str(error).split(": ", 1)[1], param, ctx)

    def __repr__(self):
        return f"Number{describe_range(**self.bounds)}"


class Size(click.ParamType):
    """A size "HxW" in pixels (`kseg.validation.parse_size`), checked at parse time.

    Args:
        low, high: int. The smallest and largest side accepted.
        square: bool. Accept one number for a square.
    """

    name = "size"

    def __init__(self, low=1, high=32768, square=False):
        self.low, self.high, self.square = low, high, square

    def get_metavar(self, param, ctx=None):
        return "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(value, "value", self.low, self.high, self.square)
        except KsegError as error:
            self.fail(str(error).split(": ", 1)[1], param, ctx)
