"""kseg.files: nothing but regular files is read, sizes are bounded, YAML cannot explode."""

import os
import socket
import threading
import time

import pytest

from kseg.errors import KsegError
from kseg.files import brief, check_regular_file, load_json, load_yaml, read_bytes, read_text


def test_reads_a_regular_file_and_follows_a_symlink_to_one(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"content")
    os.symlink(tmp_path / "a.txt", tmp_path / "link.txt")
    assert read_bytes(tmp_path / "link.txt") == b"content"
    assert check_regular_file(tmp_path / "a.txt") == 7


@pytest.mark.parametrize("kind", ["fifo", "folder", "dev_zero_link", "dev_null", "socket", "missing"])
def test_refuses_everything_else_at_once_naming_it(kind, tmp_path):
    path = tmp_path / "image.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dev_zero_link":
        os.symlink("/dev/zero", path)
    elif kind == "dev_null":
        path = "/dev/null"
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    result = {}

    def read():
        try:
            read_bytes(path, "image")
        except KsegError as error:
            result["error"] = str(error)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "read_bytes blocked"
    assert result["error"].startswith(f"{path}: image ")
    expected = {"fifo": "FIFO", "folder": "folder", "dev_zero_link": "symbolic link",
                "dev_null": "character device", "socket": "not a regular file", "missing": "not found"}
    assert expected[kind] in result["error"]


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as handle:
        handle.truncate(3 << 30)  # sparse: 3 GiB claimed, nothing stored
    started = time.perf_counter()
    with pytest.raises(KsegError, match=r"big.yaml: config is 3.0 GiB, more than the 1.0 KiB"):
        read_bytes(path, "config", limit=1024)
    assert time.perf_counter() - started < 5


def test_text_must_be_utf8(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_bytes(b"classes: [\xff\xfe]\n")
    with pytest.raises(KsegError, match=r"classes.yaml: class list is not UTF-8 text \(byte 10 is 0xff\)"):
        read_text(path, "class list")


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for number in range(1, 10):
        previous = chr(ord("a") + number - 1)
        name = chr(ord("a") + number)
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(KsegError, match=r"bomb.yaml: not valid YAML at line 2, column \d+: aliases"):
        load_yaml(path)
    assert time.perf_counter() - started < 2


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(KsegError, match="deep.yaml: not valid YAML .*nested more than 64"):
        load_yaml(path)
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(KsegError, match="deep.json: .* nested too deeply"):
        load_json(path)


def test_safe_yaml_still_refuses_python_tags_and_reads_plain_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(KsegError, match="c.yaml: not valid YAML"):
        load_yaml(path)
    path.write_text("model: fcn8s\ncrop: [512, 1024]\nlr: 1.0e-3\n")
    assert load_yaml(path) == {"model": "fcn8s", "crop": [512, 1024], "lr": 0.001}


def test_a_key_given_twice_in_one_yaml_mapping_is_refused(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text("names: {road: 1, sky: 2, road: 3}\n")
    with pytest.raises(KsegError, match=r"classes.yaml: not valid YAML at line 1, column 26: 'road' is given twice"):
        load_yaml(path)
    path.write_text("a: {road: 1}\nb: {road: 2}\n")
    assert load_yaml(path) == {"a": {"road": 1}, "b": {"road": 2}}  # equal keys of different mappings


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text('{"class_names": [')
    with pytest.raises(KsegError, match=r"classes.json: classes is not valid JSON \(line 1, column 18: Expecting"):
        load_json(path, "classes")


def test_brief_bounds_user_data():
    text = brief("x" * 10_000_000)
    assert len(text) <= 80 and text.endswith("...>")
    assert brief([1, 2]) == "[1, 2]"


@pytest.mark.parametrize("text", ["a: !!timestamp xyz", "a: " + "9" * 5000, "a: !!float abc", "a: !!int x"])
def test_values_yaml_cannot_construct_are_one_error_naming_the_file(text, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(KsegError, match="config.yaml: not valid YAML"):
        load_yaml(path)


def test_one_size_parser_for_every_size_option():
    from kseg.validation import parse_size

    assert parse_size("512x1024", "--tile") == (512, 1024)
    assert parse_size("512X1024", "--tile") == (512, 1024) and parse_size([360, 480], "crop") == (360, 480)
    assert parse_size("64", "--tile", square=True) == (64, 64)
    for bad in ("inf", "nanx3", "0x5", "99999999x2", "1.5x2", "-3x4", "x", "1x2x3", [1.0, 2], [True, 3]):
        with pytest.raises(KsegError, match="^--tile: "):
            parse_size(bad, "--tile")
    with pytest.raises(KsegError, match="each side must be 32 to 4096"):
        parse_size("16x16", "--size", 32, 4096)


def test_a_number_of_too_many_digits_is_refused_in_one_line():
    from kseg.validation import check_number

    for value in ("9" * 400, -(10**400)):  # an int beyond float's range: no OverflowError
        with pytest.raises(KsegError, match=r"^--batch-size: -?\d+\.\.\. has too many digits$"):
            check_number(value, "--batch-size", 1, 1024, integer=True)
    with pytest.raises(KsegError, match="has too many digits"):
        check_number(10**400, "lr")
    assert check_number("1024", "--batch-size", 1, 1024, integer=True) == 1024


def test_a_number_just_outside_its_range_is_not_shown_as_the_bound():
    from kseg.validation import check_number

    cases = [("1000000001", 0, 10**9, True, "1000000001 is not in [0, 1000000000]"),
             ("2147483648", 1, 2**31 - 1, True, "2147483648 is not in [1, 2147483647]"),
             ("1.0000001", 0, 1, False, "1.0000001 is not in [0, 1]"),
             ("2e6", 0, 1e6, False, "2000000 is not in [0, 1000000]"),
             (10**300, 0, 2**63 - 1, True, "1e+300 is not in [0, 9223372036854775807]")]
    for value, low, high, integer, message in cases:
        with pytest.raises(KsegError) as caught:
            check_number(value, "--n", low, high, integer=integer)
        assert str(caught.value) == f"--n: {message}"


def test_files_are_read_where_the_system_has_no_o_nonblock(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_bytes(b"a\r\nb")
    real_open, flags = os.open, []
    monkeypatch.delattr(os, "O_NONBLOCK")  # as on Windows, which needs O_BINARY instead
    monkeypatch.setattr(os, "O_BINARY", 0x8000, raising=False)
    monkeypatch.setattr(os, "open", lambda path, given: flags.append(given) or real_open(path, given & ~0x8000))
    assert read_bytes(tmp_path / "a.txt") == b"a\r\nb" and flags[0] & 0x8000
