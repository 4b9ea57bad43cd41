import errno
import importlib.util

import kseg.errors


def test_a_disk_full_error_is_known_by_its_errno_name_on_every_system(monkeypatch):
    monkeypatch.setattr(errno, "EDQUOT", 69, raising=False)  # macOS's number; Linux has 122
    spec = importlib.util.spec_from_file_location("errors_on_macos", kseg.errors.__file__)
    errors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(errors)
    assert errors.is_disk_full(OSError(69, "Disc quota exceeded"))
    assert errors.is_disk_full(OSError(errno.ENOSPC, "full"))
    assert not errors.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    monkeypatch.delattr(errno, "EDQUOT")  # a system without disk quotas
    spec.loader.exec_module(errors)
    assert errors.NO_SPACE_ERRNOS == (errno.ENOSPC,)


def test_a_wrapped_quota_error_is_known_by_its_text_in_either_spelling():
    assert kseg.errors.is_disk_full(RuntimeError("Can't write data (Disk quota exceeded)"))  # Linux
    assert kseg.errors.is_disk_full(RuntimeError("Can't write data (Disc quota exceeded)"))  # macOS
