"""Reading many files on a few threads, in order, and stopping at once when told to.

`ordered_map` replaces `ThreadPoolExecutor.map` for kseg's readers (verify, stats, the
evaluation batches of the JAX and PyTorch backends). It keeps only a few items in flight,
so memory does not grow with the split, and when the caller stops early (an error, Ctrl-C,
SIGTERM) the items not yet started are cancelled instead of being worked through first.

Every wait for a reader is bounded (`wait_for`): after `NOTICE_AFTER` seconds a line says
which item is awaited, and after `KSEG_READ_TIMEOUT` seconds (default 300) the wait ends
with a `ReadTimeout` naming it, as when a file lies on a network file system that stopped
answering. The reader threads (`ReaderPool`) are daemon threads, so a read stuck in the
operating system cannot keep kseg from exiting once it has said so.
"""

import collections
import concurrent.futures
import os
import queue
import threading

from kseg.errors import KsegError
from kseg.files import brief
from kseg.progress import write
from kseg.validation import seconds_from_environment

READ_TIMEOUT_VARIABLE = "KSEG_READ_TIMEOUT"
DEFAULT_READ_TIMEOUT = 300.0  # one file read, decoded and augmented
NOTICE_AFTER = 10.0  # seconds before a line says what is awaited


class ReadTimeout(KsegError):
    """A reader thread did not finish its item within the read timeout."""

    kind = "timed out"


def default_workers():
    """Reader threads: one per CPU core, at most 8."""
    return min(8, os.cpu_count() or 1)


def read_timeout():
    """Seconds one item may take (`KSEG_READ_TIMEOUT`, default `DEFAULT_READ_TIMEOUT`)."""
    return seconds_from_environment(READ_TIMEOUT_VARIABLE, DEFAULT_READ_TIMEOUT)


class ReaderPool:
    """A few daemon threads running submitted calls; `submit` returns a
    `concurrent.futures.Future`. Unlike `ThreadPoolExecutor`'s threads, these are never
    waited for when the process exits.

    Args:
        workers: int. Threads.
        name: str. Prefix of the threads' names.
    """

    def __init__(self, workers, name="kseg-reader"):
        self._tasks = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True)
                         for number in range(max(int(workers), 1))]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def submit(self, function, *args):
        """Runs `function(*args)` on a thread; returns its Future."""
        if self._closed:
            raise RuntimeError("submit on a closed ReaderPool")
        future = concurrent.futures.Future()
        self._tasks.put((future, function, args))
        return future

    def _work(self):
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, function, args = task
            if self._closed:
                future.cancel()
            if not future.set_running_or_notify_cancel():  # cancelled
                continue
            try:
                result = function(*args)
            except BaseException as error:  # handed to the waiting thread
                future.set_exception(error)
            else:
                future.set_result(result)

    def shutdown(self):
        """Calls not yet started never start; running ones end on their own."""
        self._closed = True
        for _ in self._threads:
            self._tasks.put(None)


def wait_for(future, what, timeout):
    """`future.result()`, waiting at most `timeout` seconds (callers pass `read_timeout()`).

    After `NOTICE_AFTER` seconds one line (kseg.progress.write) says what is awaited.

    Args:
        future: concurrent.futures.Future.
        what: str or callable returning str. What the item is, for messages (a path).
        timeout: float.

    Raises:
        ReadTimeout: naming `what`; the reader thread is left to end on its own.
    """
    first = min(NOTICE_AFTER, timeout)
    if concurrent.futures.wait([future], first).done:
        return future.result()
    name = what() if callable(what) else what
    if timeout > first:
        write(f"waiting for {name} (read for {first:g} s so far; gives up after {timeout:g} s: "
              f"{READ_TIMEOUT_VARIABLE})")
        if concurrent.futures.wait([future], timeout - first).done:
            return future.result()
    raise ReadTimeout(
        f"{name}: not read within {timeout:g} s (a stalled disk or network file system?); check the "
        f"file, or allow longer with {READ_TIMEOUT_VARIABLE}=SECONDS"
    )


def describe_item(item):
    """An item for messages: a path as it is, the paths of a pair joined by a comma,
    anything else as a short repr."""
    parts = item if isinstance(item, (tuple, list)) and item else [item]
    if all(isinstance(part, (str, os.PathLike)) for part in parts):
        return ", ".join(os.fspath(part) for part in parts)
    return brief(item)


def ordered_map(function, items, workers=None, describe=None):
    """Yields `function(item)` for each item, in order, computed on `workers` threads.

    Args:
        function: callable. Called once per item, on a worker thread.
        items: iterable. The inputs.
        workers: int or None. Threads; default `default_workers()`.
        describe: callable or None. Names an item in messages (default: `describe_item`).
    """
    describe = describe or describe_item
    workers = workers or default_workers()
    timeout = read_timeout()
    pool = ReaderPool(workers)
    pending = collections.deque()
    try:
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) >= 2 * workers:
                item, future = pending.popleft()
                yield wait_for(future, lambda item=item: describe(item), timeout)
        while pending:
            item, future = pending.popleft()
            yield wait_for(future, lambda item=item: describe(item), timeout)
    finally:
        # On an early stop, running items finish on their own; queued ones never start.
        pool.shutdown()
