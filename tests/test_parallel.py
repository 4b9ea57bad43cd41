import contextlib
import threading
import time

from kseg.parallel import ordered_map


def test_results_come_in_order():
    assert list(ordered_map(lambda x: x * x, range(50), workers=3)) == [x * x for x in range(50)]


def test_an_early_stop_cancels_what_has_not_started():
    started = []
    lock = threading.Lock()

    def slow(item):
        with lock:
            started.append(item)
        time.sleep(0.05)
        return item

    with contextlib.closing(ordered_map(slow, range(200), workers=2)) as results:
        for item in results:
            if item == 1:
                break  # as when Ctrl-C or an error stops the caller
    time.sleep(0.3)  # anything still queued would start now
    assert len(started) <= 6, started  # a few in flight, never the remaining 198
