"""classes.yaml says which mask value is which class, and which values are void, for every reader."""

import os

import numpy as np
import pytest
from data_helpers import random_image, write_png

from kseg.config import TrainConfig
from kseg.data import DatasetOptions, get_dataset_spec, make_dataset
from kseg.data.stats import compute_stats
from kseg.data.verify import ONE_CLASS, verify_dataset
from kseg.errors import KsegError
from kseg.evaluation import evaluate_predictions

BINARY = "classes:\n  - {name: background, value: 0}\n  - {name: object, value: 255}\n"


def binary_masks(root, classes=BINARY, void=None, count=4):
    """0/255 masks (an object square on background; `void`, if given, a border of that value)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(count):
            mask = np.zeros((24, 32), np.uint8)
            mask[4:14, 6 + index:20 + index] = 255
            if void is not None:
                mask[0] = void
            write_png(os.path.join(root, "images", split, f"{index}.png"), random_image(rng, 24, 32))
            write_png(os.path.join(root, "masks", split, f"{index}.png"), mask)
    with open(os.path.join(root, "classes.yaml"), "w") as handle:
        handle.write(classes)
    return str(root)


def test_binary_0_255_masks_declared_by_value_are_read_as_two_classes_everywhere(tmp_path):
    root = binary_masks(tmp_path / "d")
    spec = get_dataset_spec("folder", root)
    report = verify_dataset(spec, "train")
    assert report.ok, report.summary()
    assert report.class_pixels[0] > 0 and report.class_pixels[1] == 4 * 10 * 14
    assert report.class_pixels[255] == 0
    stats = compute_stats(spec, "train")
    assert stats.as_dict()["classes"][1]["pixels"] == 4 * 10 * 14
    dataset = make_dataset(spec, "train", training=False, batch_size=4, options=DatasetOptions(engine="python"))
    [(_, masks)] = list(dataset)
    assert set(np.unique(masks)) == {0, 1}
    # evaluating predictions equal to the truth scores 1.0 (the object is a class, not void)
    for image, mask in spec.pairs("val"):
        write_png(tmp_path / "p" / os.path.basename(image), spec.read_pair(image, mask)[1])
    assert evaluate_predictions(tmp_path / "p", spec, "val", progress=False).scores["mean_iou"] == 1.0
    # training's checks let it through (undeclared, the same masks are refused: see below)
    from kseg.training.data_checks import check_dataset

    assert check_dataset(TrainConfig(model="fcn8s", data="folder", data_dir=root), spec) == 0


def test_undeclared_binary_masks_are_refused_with_the_fix_named(tmp_path):
    root = binary_masks(tmp_path / "d", classes="classes: [background, object]\n")
    spec = get_dataset_spec("folder", root)
    [problem] = [problem for problem in verify_dataset(spec, "train").problems if problem.kind == ONE_CLASS]
    assert "{name: object, value: 255}" in problem.message and "{name: background, value: 0}" in problem.message
    assert f"kseg data init {root}" in problem.message
    from kseg.training.data_checks import check_dataset

    with pytest.raises(KsegError, match="value: 255"):
        check_dataset(TrainConfig(model="fcn8s", data="folder", data_dir=root), spec)


def test_ignore_values_other_than_255(tmp_path):
    # 0 is void here, 1 and 255 are the classes
    classes = "classes:\n  - {name: road, value: 1}\n  - {name: car, value: [255, 254]}\nignore_values: [0]\n"
    root = binary_masks(tmp_path / "d", classes=classes, void=1)
    spec = get_dataset_spec("folder", root)
    image, mask = spec.pairs("train")[0]
    _, train_ids = spec.read_pair(image, mask)
    assert (train_ids[0] == 0).all()  # value 1: road, train id 0
    assert (train_ids[5, 10] == 1)  # value 255: car, train id 1
    assert (train_ids[20] == 255).all()  # value 0: ignored
    raw = np.zeros((24, 32), np.uint8)
    raw[3, 3] = 7
    write_png(mask, raw)
    declared = r"1 \(road\), 255, 254 \(car\), and 0 \(ignore\)"
    with pytest.raises(KsegError, match=r"mask values 7 are not folder labels .*" + declared):
        spec.read_pair(image, mask)


def test_index_masks_with_undeclared_ignore_value(tmp_path):
    # without values, ignore_values adds void values to the class indices
    root = binary_masks(tmp_path / "d", classes="classes: [a, b]\nignore_values: [100]\n", void=100)
    spec = get_dataset_spec("folder", root)
    assert spec.valid_raw[100] and spec.raw_to_train[100] == 255 and spec.raw_to_train[1] == 1


def test_colour_masks_follow_the_declared_values(tmp_path):
    classes = ("classes:\n  - {name: sky, color: [0, 0, 255], value: 9}\n"
               "  - {name: tree, color: [0, 255, 0], value: 3}\nignore_colors: [[0, 0, 0]]\n")
    root = binary_masks(tmp_path / "d", classes=classes)
    spec = get_dataset_spec("folder", root)
    image, mask = spec.pairs("train")[0]
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[:10] = (0, 0, 255)
    colour[10:20] = (0, 255, 0)
    write_png(mask, colour)
    _, train_ids = spec.read_pair(image, mask)
    assert (train_ids[:10] == 0).all() and (train_ids[10:20] == 1).all() and (train_ids[20:] == 255).all()


@pytest.mark.parametrize("classes, message", [
    ("classes:\n  - {name: a, value: 0}\n  - b\n", "class 1 .b. has no value"),
    ("classes:\n  - {name: a, value: 3}\n  - {name: b, value: [4, 3]}\n", "3 is given to both a and b"),
    ("classes:\n  - {name: a, value: 3}\n  - {name: b, value: 4}\nignore_values: [4]\n", "4 is both the value of b"),
    ("classes: [a, b]\nignore_values: [1]\n", "1 is the index of class b"),
    ("classes:\n  - {name: a, value: 256}\n  - {name: b, value: 1}\n", "integer 0..255"),
    ("classes:\n  - {name: a, values: 3}\n  - b\n", "unknown key 'values'"),
    ("classes: [a, b]\nignore_value: [0]\n", "unknown key 'ignore_value'"),
    ("classes: [a, b]\nsplits: {val_fraction: 0.9}\n", "at most 0.5"),
    ("classes:\n  - {name: a, value: 0, color: [1, 1, 1]}\n  - {name: b, value: 255, color: [2, 2, 2]}\n"
     "ignore_colors: [[0, 0, 0]]\n", "add one to ignore_values"),
    ("classes:\n  - {name: a, color: [0, 0, 0]}\n  - {name: b, color: [1, 1, 1]}\nignore_colors: [[0, 0, 0]]\n",
     r"colour \[0, 0, 0\] is both the colour of a and in ignore_colors"),
    ("classes:\n  - {name: a, color: [0, 0, 0], colour: [9, 9, 9]}\n  - {name: b, color: [1, 1, 1]}\n",
     "class 0: color and colour both given; keep one"),
    ("classes:\n  - {name: a, color: [0, 0, 0]}\n  - {name: b, color: [1, 1, 1]}\nignore_colors: [[2, 2, 2]]\n"
     "ignore_colours: [[0, 0, 0]]\n", "ignore_colors and ignore_colours both given; keep one"),
])
def test_bad_declarations_are_one_line_naming_the_file(tmp_path, classes, message):
    root = binary_masks(tmp_path / "d", classes=classes, count=1)
    with pytest.raises(KsegError, match=message) as error:
        get_dataset_spec("folder", root)
    assert str(error.value).startswith(os.path.join(root, "classes.yaml"))


@pytest.mark.parametrize("character", ["\x85", "\u2028", "\u2029", "\x9b"])
def test_a_class_name_holding_a_unicode_line_break_or_c1_control_is_refused(tmp_path, character):
    from kseg.data.importers.common import ClassTable

    root = binary_masks(tmp_path / "d", classes=f'classes: [a, "b\\u{ord(character):04x}c"]\n', count=1)
    with pytest.raises(KsegError, match="holds a control character"):
        get_dataset_spec("folder", root)
    with pytest.raises(KsegError, match="^labels.txt: class name .* holds a control character"):
        ClassTable(["a", f"b{character}c"], None, (), "labels.txt")


@pytest.mark.parametrize(("name", "message"), [
    (" ", "empty class name"), ("x" * 201, "class name of 201 characters, more than 200"),
    (7, "class name 7 is not text"),
])
def test_an_import_class_list_follows_the_rule_of_classes_yaml(name, message):
    from kseg.data.importers.common import ClassTable

    with pytest.raises(KsegError, match=f"^labels.txt: {message}"):
        ClassTable(["a", name], None, (), "labels.txt")


def test_a_split_name_holding_a_unicode_line_break_is_refused(tmp_path):
    spec = get_dataset_spec("folder", binary_masks(tmp_path / "d", count=1))
    for split in ("tr\x85ain", "tr\u2028ain", "tr\x7fain"):
        with pytest.raises(KsegError, match="no control characters"):
            spec.pairs(split)
