import os
import stat

import pytest

from kseg.outputs import write_bytes as write_bytes_atomic
from kseg.outputs import writing as atomic_path


def test_file_appears_only_when_complete_and_gets_a_normal_mode(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as temporary:
        assert temporary.endswith(".bin") and not target.exists()
        with open(temporary, "wb") as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_directories_are_replaced_whole(tmp_path):
    target = tmp_path / "saved"
    for content in (b"first", b"second"):
        with atomic_path(target, directory=True) as temporary:
            (open(os.path.join(temporary, "data"), "wb")).write(content)
    assert (target / "data").read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["saved"]


def test_a_full_disk_is_one_error_naming_the_destination_and_leaves_nothing(tmp_path):
    import errno

    from kseg.errors import DiskFullError

    target = tmp_path / "labels.png"
    write_bytes_atomic(target, b"old")
    with pytest.raises(DiskFullError, match="labels.png: no space left on device"), atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["labels.png"]


def test_a_remembered_interruption_stops_the_rename(tmp_path, monkeypatch):
    from kseg import signals

    monkeypatch.setattr(signals, "_received", [15])
    with (
        pytest.raises(KeyboardInterrupt),
        atomic_path(tmp_path / "model.tflite") as temporary,
        open(temporary, "wb") as handle,
    ):
        handle.write(b"complete, but the command was interrupted")
    assert os.listdir(tmp_path) == []


def test_a_folder_written_atomically_gets_a_normal_folders_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "dataset", directory=True):
            pass
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "dataset").st_mode) == 0o755


def test_without_an_atomic_exchange_a_failed_second_rename_puts_the_previous_folder_back(
        tmp_path, monkeypatch):
    from kseg import outputs

    target = tmp_path / "saved"
    with atomic_path(target, directory=True) as temporary:
        (open(os.path.join(temporary, "data"), "wb")).write(b"first")
    monkeypatch.setattr(outputs, "_exchange", lambda first, second: False)  # not Linux
    with atomic_path(target, directory=True) as temporary:  # the fallback replaces it too
        (open(os.path.join(temporary, "data"), "wb")).write(b"second")
    assert (target / "data").read_bytes() == b"second" and os.listdir(tmp_path) == ["saved"]
    real_replace = os.replace

    def interrupted_replace(source, destination):
        if os.path.basename(source).endswith(".tmp"):  # the new folder into place
            raise KeyboardInterrupt
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt), atomic_path(target, directory=True) as temporary:
        (open(os.path.join(temporary, "data"), "wb")).write(b"third")
    assert (target / "data").read_bytes() == b"second" and os.listdir(tmp_path) == ["saved"]
