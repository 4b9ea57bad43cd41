"""Structured files (YAML configs, classes.json, split lists, the model config inside a
.keras archive, the ImageNet class index) that are malformed, in another encoding, nested
100000 deep, huge, or not regular files: every verb that reads one stops with exactly one
`error: FILE: problem` line and exit status 1, never a traceback, a RecursionError or a
UnicodeDecodeError, and never a report row in place of the error.

Verbs run in-process (Click's CliRunner); a timer fails a test that hangs.
"""

import os
import shutil
import signal
import zipfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg.errors import KsegError
from kseg.files import (
    FileError,
    FileKindError,
    FileMissingError,
    FileTooLargeError,
    MalformedFileError,
    NotTextError,
    load_json,
    load_yaml,
    parse_json,
)

HANG_LIMIT = 240  # seconds for one test on two busy cores

# Content that no JSON or YAML reader of kseg may choke on, and the error class it gives.
DEEP = 100000
HOSTILE_JSON = {
    "deep list": (b"[" * DEEP + b"]" * DEEP, MalformedFileError),
    "deep object": (b'{"a":' * (DEEP // 2) + b"1" + b"}" * (DEEP // 2), MalformedFileError),
    "UTF-16 with BOM": ('{"class_names": ["a"]}'.encode("utf-16"), NotTextError),
    "UTF-32 with BOM": ('{"class_names": ["a"]}'.encode("utf-32"), NotTextError),
    "Latin-1": ('{"class_names": ["caf\xe9"]}'.encode("latin-1"), NotTextError),
    "NUL bytes": (b'{"class_names": ["a\x00b"]}', MalformedFileError),
    "binary": (bytes(range(256)) * 8, NotTextError),
    "5000-digit number": (b'{"num_classes": ' + b"9" * 5000 + b"}", MalformedFileError),
    "empty": (b"", MalformedFileError),
    "trailing data": (b'{"class_names": ["a"]} {}', MalformedFileError),
}
HOSTILE_YAML = {
    "deep flow list": (b"a: " + b"[" * DEEP + b"]" * DEEP + b"\n", MalformedFileError),
    "deep flow mapping": (b"a: " + b"{b: " * (DEEP // 4) + b"1" + b"}" * (DEEP // 4) + b"\n",
                          MalformedFileError),
    "deep blocks": ("".join("  " * level + "a:\n" for level in range(300)).encode() + b"  " * 300 + b"b: 1\n",
                    MalformedFileError),
    "UTF-16 with BOM": ("epochs: 1\n".encode("utf-16"), NotTextError),
    "Latin-1": ("run_dir: caf\xe9\n".encode("latin-1"), NotTextError),
    "NUL bytes": (b"epochs: 1\x00\n", MalformedFileError),
    "binary": (bytes(range(256)) * 8, NotTextError),
    "5000-digit number": (b"epochs: " + b"9" * 5000 + b"\n", MalformedFileError),
    "alias bomb": (b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", MalformedFileError),
}
SPECIAL = ("fifo", "folder", "dev_zero", "link_to_fifo", "dangling_link")


@pytest.fixture(autouse=True)
def no_hang():
    """Fails the test (instead of blocking the suite) if it runs past HANG_LIMIT."""

    def expire(signum, frame):
        raise TimeoutError(f"the test ran past {HANG_LIMIT} s: something waits forever")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, HANG_LIMIT)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def write(path, data):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def make_special(path, kind):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        os.mkdir(path)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", path)
    elif kind == "link_to_fifo":
        os.mkfifo(path + ".fifo")
        os.symlink(path + ".fifo", path)
    elif kind == "dangling_link":
        os.symlink(path + ".nowhere", path)
    return path


def make_huge(path, size=70 << 20):
    """A sparse file of `size` bytes (no disk used): bigger than any text kseg reads."""
    write(path, b"")
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return str(path)


def invoke(*arguments):
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments])
    return result.exit_code, result.output


def assert_one_error(code, output, path, *words):
    """Exit 1 and exactly one line `error: PATH...`, holding `words`; no Python error names."""
    assert code == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith(f"error: {path}"), errors[0]
    for word in words:
        assert word in errors[0], errors[0]
    for python in ("Traceback", "RecursionError", "UnicodeDecodeError", "JSONDecodeError", "ValueError"):
        assert python not in output, output[-3000:]
    assert len(errors[0]) < 600, errors[0]
    assert "problem" not in output.split("error:")[0].lower(), output[-3000:]  # no report table first


# -- the readers themselves ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_json_reader_gives_one_file_error(case, tmp_path):
    content, expected = HOSTILE_JSON[case]
    path = write(tmp_path / "classes.json", content)
    with pytest.raises(expected) as raised:
        load_json(path, "class description")
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message
    with pytest.raises(expected):  # the same from bytes read elsewhere (a zip member)
        parse_json(content, path)


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_yaml_reader_gives_one_file_error(case, tmp_path):
    content, expected = HOSTILE_YAML[case]
    path = write(tmp_path / "config.yaml", content)
    with pytest.raises(expected) as raised:
        load_yaml(path, "config file")
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message


def test_other_encodings_are_named():
    with pytest.raises(NotTextError, match="is UTF-16 text, not UTF-8; save it as UTF-8"):
        parse_json("{}".encode("utf-16"), "F")
    with pytest.raises(NotTextError, match="is UTF-32 text"):
        parse_json("{}".encode("utf-32"), "F")
    with pytest.raises(NotTextError, match=r"byte 2 is 0xe9"):
        parse_json(b'"a\xe9"', "F")
    assert parse_json(b'\xef\xbb\xbf{"a": 1}', "F") == {"a": 1}  # a UTF-8 byte-order mark is fine


@pytest.mark.parametrize("kind", SPECIAL)
def test_special_files_are_refused_before_reading(kind, tmp_path):
    path = make_special(tmp_path / "classes.json", kind)
    expected = FileMissingError if kind == "dangling_link" else FileKindError
    for reader in (load_json, load_yaml):
        with pytest.raises(expected) as raised:
            reader(path, "class description")
        assert str(raised.value).startswith(f"{path}: ")


def test_huge_files_are_refused_by_size(tmp_path):
    path = make_huge(tmp_path / "config.yaml")
    with pytest.raises(FileTooLargeError, match="70.0 MiB, more than"):
        load_yaml(path, "config file")
    with pytest.raises(FileTooLargeError):
        load_json(write(tmp_path / "small.json", b"[" + b"1," * 600 + b"1]"), limit=1024)


def test_every_file_error_is_a_kseg_error():
    for kind in (FileKindError, FileMissingError, FileTooLargeError, MalformedFileError, NotTextError):
        assert issubclass(kind, FileError) and issubclass(kind, KsegError)
        assert kind.kind  # what `kseg data verify` counts it as


# -- the model config inside a .keras archive ------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import tiny_run_dir

    return tiny_run_dir(tmp_path_factory.mktemp("model"))


def model_with_config(run_dir, folder, config):
    """A copy of the run's model whose config.json is `config` (bytes, or None: absent)."""
    source = run_dir / "checkpoints" / "best.keras"
    path = folder / "model.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            if item.filename == "config.json":
                if config is not None:
                    copy.writestr("config.json", config)
            else:
                copy.writestr(item, original.read(item))
    return path


KERAS_CONFIGS = {
    "deep list": HOSTILE_JSON["deep list"][0],
    "deep object": HOSTILE_JSON["deep object"][0],
    "UTF-16 with BOM": HOSTILE_JSON["UTF-16 with BOM"][0],
    "Latin-1": HOSTILE_JSON["Latin-1"][0],
    "binary": HOSTILE_JSON["binary"][0],
    "5000-digit number": HOSTILE_JSON["5000-digit number"][0],
    "empty": b"",
    "a list, not an object": b"[1, 2, 3]",
    "missing": None,
}


@pytest.mark.parametrize("case", sorted(KERAS_CONFIGS))
def test_a_damaged_model_config_is_one_line_naming_the_model(case, run_dir, tmp_path):
    from kseg.models.saving import load_model

    path = model_with_config(run_dir, tmp_path, KERAS_CONFIGS[case])
    with pytest.raises(KsegError) as raised:
        load_model(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "config.json" in message and "\n" not in message, message
    assert "RecursionError" not in message and "codec" not in message, message


def test_a_model_config_that_unpacks_past_the_limit_is_refused_unread(run_dir, tmp_path):
    from kseg.models.saving import load_model

    path = model_with_config(run_dir, tmp_path, b" " * (65 << 20) + b"{}")  # a few KB packed
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("config.json").compress_size < (1 << 20)
    with pytest.raises(MalformedFileError, match="config.json inside the model file unpacks to"):
        load_model(path)


def test_a_lambda_deep_in_the_config_is_found_without_recursion():
    from kseg.models.saving import _code_layers

    config = {"class_name": "Lambda", "config": {"name": "hidden"}}
    for _ in range(50000):
        config = {"config": {"layers": [config]}}
    assert _code_layers(config) == ["Lambda layer 'hidden'"]


@pytest.mark.parametrize("case", ["deep list", "UTF-16 with BOM"])
def test_predict_and_export_name_the_damaged_model(case, run_dir, tmp_path):
    path = model_with_config(run_dir, tmp_path, KERAS_CONFIGS[case])
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.zeros((20, 24, 3), np.uint8))
    code, output = invoke("predict", image.parent, "--model", path, "--out", tmp_path / "out")
    assert_one_error(code, output, path, "config.json")
    code, output = invoke("export", path, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert_one_error(code, output, path, "config.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


# -- classes.json of a run -------------------------------------------------------------


def run_with_classes(run_dir, folder, content=None, special=None):
    run = folder / "run"
    shutil.copytree(run_dir, run)
    classes = run / "classes.json"
    if special:
        make_special(classes, special)
    else:
        write(classes, content)
    return run, str(classes)


def images_folder(folder):
    images = folder / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((20, 24, 3), np.uint8))
    return images


@pytest.mark.parametrize("case", ["deep list", "UTF-16 with BOM", "5000-digit number", "binary",
                                  "fifo", "dev_zero", "folder"])
def test_predict_names_a_damaged_classes_json(case, run_dir, tmp_path):
    if case in SPECIAL:
        run, classes = run_with_classes(run_dir, tmp_path, special=case)
    else:
        run, classes = run_with_classes(run_dir, tmp_path, HOSTILE_JSON[case][0])
    code, output = invoke("predict", images_folder(tmp_path), "--model", run, "--out", tmp_path / "out")
    assert_one_error(code, output, classes)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import robustness_corpus as corpus

    return corpus.write_dataset(tmp_path_factory.mktemp("data"), "one_pixel").root


@pytest.mark.parametrize("case", ["deep object", "fifo", "dev_zero"])
def test_evaluate_names_a_damaged_classes_json_of_the_model_file(case, run_dir, dataset, tmp_path):
    if case in SPECIAL:
        run, classes = run_with_classes(run_dir, tmp_path, special=case)
    else:
        run, classes = run_with_classes(run_dir, tmp_path, HOSTILE_JSON[case][0])
    model = run / "checkpoints" / "best.keras"  # its run's classes.json is found beside it
    code, output = invoke("evaluate", model, "--data", "folder", "--data-dir", dataset, "--split", "all",
                          "--out", tmp_path / "metrics.json")
    assert_one_error(code, output, classes)
    assert not (tmp_path / "metrics.json").exists()


# -- training configs ------------------------------------------------------------------


@pytest.mark.parametrize("case", ["deep flow list", "deep blocks", "UTF-16 with BOM", "NUL bytes",
                                  "5000-digit number", "fifo", "dev_zero", "huge"])
def test_train_names_a_damaged_config(case, dataset, tmp_path):
    config = str(tmp_path / "config.yaml")
    if case in SPECIAL:
        make_special(config, case)
    elif case == "huge":
        make_huge(config)
    else:
        write(config, HOSTILE_YAML[case][0])
    run = tmp_path / "run"
    code, output = invoke("train", "--config", config, "--data", "folder", "--data-dir", dataset,
                          "--weights", "none", "--width", "0.0625", "--epochs", "1", "--run-dir", run)
    assert_one_error(code, output, config)
    assert not run.exists()


# -- split lists -----------------------------------------------------------------------


def voc_dataset(root):
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    images.mkdir(parents=True)
    masks.mkdir()
    cv2.imwrite(str(images / "a.jpg"), np.full((24, 32, 3), 90, np.uint8))
    cv2.imwrite(str(masks / "a.png"), np.ones((24, 32), np.uint8))
    return str(root / "ImageSets" / "Segmentation" / "train.txt")


LIST_CASES = ["Latin-1", "UTF-16 with BOM", "binary", "NUL entry", "huge", "fifo", "folder", "dev_zero",
              "link_to_fifo"]


@pytest.mark.parametrize("case", LIST_CASES)
@pytest.mark.parametrize("verb", ["verify", "stats", "train"])
def test_every_data_verb_names_a_damaged_split_list(verb, case, tmp_path):
    root = tmp_path / "voc"
    listed = voc_dataset(root)
    if case in SPECIAL:
        make_special(listed, case)
    elif case == "huge":
        make_huge(listed)
    elif case == "NUL entry":
        write(listed, b"a\x00\n")
    else:
        write(listed, {"Latin-1": "caf\xe9\n".encode("latin-1"), "UTF-16 with BOM": "a\n".encode("utf-16"),
                       "binary": bytes(range(256))}[case])
    if verb == "train":
        code, output = invoke("train", "--data", "voc", "--data-dir", root, "--weights", "none", "--width",
                              "0.0625", "--epochs", "1", "--run-dir", tmp_path / "run")
    else:
        code, output = invoke("data", verb, "--data", "voc", "--data-dir", root, "--split", "train",
                              "--no-progress")
    assert_one_error(code, output, listed)


# -- the ImageNet class index ----------------------------------------------------------


@pytest.mark.parametrize("case", ["deep object", "UTF-16 with BOM", "Latin-1", "fifo", "dev_zero",
                                  "not pairs of strings"])
def test_the_class_index_is_one_error(case, tmp_path):
    from kseg.heatmap import load_class_index

    path = str(tmp_path / "imagenet_class_index.json")
    if case in SPECIAL:
        make_special(path, case)
    elif case == "not pairs of strings":
        import json

        write(path, json.dumps({str(index): ["n0", {"name": index}] for index in range(1000)}).encode())
    else:
        write(path, HOSTILE_JSON[case][0])
    with pytest.raises(KsegError) as raised:
        load_class_index(path)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)
