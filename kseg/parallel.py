"""Reading many files on a few threads, in order, and stopping at once when told to.

`ordered_map` replaces `ThreadPoolExecutor.map` for kseg's readers (verify, stats). It keeps
only a few items in flight, so memory does not grow with the split, and when the caller
stops early (an error, Ctrl-C, SIGTERM) the items not yet started are cancelled instead
of being worked through before the executor lets go.
"""

import collections
import concurrent.futures
import os


def default_workers():
    """Reader threads: one per CPU core, at most 8."""
    return min(8, os.cpu_count() or 1)


def ordered_map(function, items, workers=None):
    """Yields `function(item)` for each item, in order, computed on `workers` threads.

    Args:
        function: callable. Called once per item, on a worker thread.
        items: iterable. The inputs.
        workers: int or None. Threads; default `default_workers()`.
    """
    workers = workers or default_workers()
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    pending = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # On an early stop, running items finish on their own; queued ones never start.
        pool.shutdown(wait=not pending, cancel_futures=True)
