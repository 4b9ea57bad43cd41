"""Progress output: a bar in a terminal, a few plain lines in a log file or CI."""

import io

from kseg import progress as progress_module
from kseg.progress import LineProgress, progress
from kseg.training.logs import TrainingLog, training_progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_line_progress_writes_a_few_lines_not_one_per_update():
    clock, stream = FakeClock(), io.StringIO()
    bar = LineProgress(1000, "predict", "image", interval=30, stream=stream, clock=clock)
    for _ in range(1000):
        clock.now += 0.1  # 100 s in all
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines  # at 30, 60 and 90 s, then the last line
    assert lines[0] == "predict: 300/1000 image (30%), 30 s"
    assert lines[-1] == "predict: 1000/1000 image (100%), done in 1 min 40 s"
    assert "\r" not in stream.getvalue()
    bar.close()  # closing twice writes nothing more
    assert len(stream.getvalue().splitlines()) == 4


def test_short_or_disabled_loops_stay_silent():
    clock, stream = FakeClock(), io.StringIO()
    with LineProgress(10, "verify", "pair", stream=stream, clock=clock) as bar:
        for _ in range(10):
            clock.now += 0.5
            bar.update(1)
    quiet = LineProgress(10, "verify", "pair", enabled=False, interval=1, stream=stream, clock=clock)
    for _ in range(10):
        clock.now += 5
        quiet.update(1)
    quiet.close()
    assert stream.getvalue() == ""


def test_progress_is_a_bar_only_in_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress(5, "x"), LineProgress)
    monkeypatch.setattr("sys.stderr", Terminal())
    bar = progress(5, "x")
    assert not isinstance(bar, LineProgress)
    bar.close()


def test_training_progress_without_a_terminal_logs_lines(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    verbose, callbacks = training_progress(1)
    assert verbose == 0 and len(callbacks) == 1  # kseg's epoch lines, and TrainingLog's within epochs
    assert training_progress(2) == (0, []) and training_progress(0) == (0, [])

    clock, stream = FakeClock(), io.StringIO()
    log = TrainingLog(interval=30, stream=stream, clock=clock)
    log.set_params({"epochs": 10, "steps": 375})
    log.on_epoch_begin(2)
    for step in range(375):
        clock.now += 0.25  # 94 s for the epoch
        log.on_train_batch_end(step, {"loss": 0.5})
    lines = stream.getvalue().splitlines()
    assert lines == ["epoch 3/10: step 120/375, loss 0.5000, 30 s",
                     "epoch 3/10: step 240/375, loss 0.5000, 1 min 00 s",
                     "epoch 3/10: step 360/375, loss 0.5000, 1 min 30 s"]


def test_durations_read_naturally():
    assert progress_module.duration(5.4) == "5 s"
    assert progress_module.duration(65) == "1 min 05 s"
    assert progress_module.duration(3 * 3600 + 125) == "3 h 02 min"
