"""One progress display for every long loop: a bar in a terminal, a few lines elsewhere.

In a terminal `progress` is a tqdm bar that redraws in place and clears when done. When
stderr is not a terminal (a log file, CI) redrawing would write one line per update, so
the bar then prints at most about one line every `LOG_INTERVAL` seconds.
"""

import sys

LOG_INTERVAL = 30.0


def progress(total=None, desc="", unit="it", enabled=True, leave=False):
    """A tqdm bar on stderr (see the module docstring); `enabled=False` shows nothing.

    Use it as a context manager or call `.update(n)` and `.close()`.
    """
    from tqdm import tqdm

    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(
        total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, disable=not enabled,
        mininterval=0.1 if interactive else LOG_INTERVAL, dynamic_ncols=interactive,
    )


def write(message):
    """Prints a line on stderr above any open bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
