"""`kseg data init` writes a classes.yaml from the masks, one kseg then reads as intended."""

import os

import numpy as np
from click.testing import CliRunner
from data_helpers import random_image, write_png
from kseg.cli.main import cli

from kseg.data import get_dataset_spec
from kseg.data.verify import verify_dataset


def folder(root, masks, split_folders=False):
    """images/ and masks/ with one image per mask array of `masks` (index or colour)."""
    rng = np.random.default_rng(0)
    for index, mask in enumerate(masks):
        split = ("train" if index % 3 else "val") if split_folders else ""
        write_png(os.path.join(root, "images", split, f"{index}.png"), random_image(rng, *mask.shape[:2]))
        write_png(os.path.join(root, "masks", split, f"{index}.png"), mask)
    return str(root)


def binary(count=10):
    masks = []
    for index in range(count):
        mask = np.zeros((24, 32), np.uint8)
        mask[3:12, index:index + 15] = 255
        masks.append(mask)
    return masks


def init(root):
    return CliRunner().invoke(cli, ["data", "init", root, "--no-progress"])


def test_binary_0_255_masks_become_background_and_object(tmp_path):
    root = folder(tmp_path / "d", binary())
    result = init(root)
    assert result.exit_code == 0, result.output
    assert "no split folders: validation will hold out 1 of the 10 images" in result.output
    assert f"kseg data verify --data folder --data-dir {root}" in result.output
    assert f"kseg train --recipe folder-scratch --data-dir {root}" in result.output  # works offline, on a CPU
    spec = get_dataset_spec("folder", root)
    assert spec.class_names == ("background", "object")
    report = verify_dataset(spec, "all")
    assert report.ok, report.summary()
    assert report.class_pixels[1] == sum(int((mask == 255).sum()) for mask in binary())
    text = (tmp_path / "d" / "classes.yaml").read_text()
    assert "splits: {val_fraction: 0.1, seed: 0}" in text and "No split folders" in text
    assert len(spec.pairs("val")) == 1 and len(spec.pairs("train")) == 9


def test_a_folder_named_with_bytes_not_utf8_or_a_line_break_is_described_and_readable(tmp_path):
    for name in (os.fsdecode(b"caf\xe9"), "two\nlines: [x]"):
        root = str(tmp_path / name)
        os.rename(folder(tmp_path / "plain", binary(3)), root)  # OpenCV cannot write under such a name
        result = init(root)
        assert result.exit_code == 0, result.output
        wrote = f"wrote {os.path.join(root, 'classes.yaml')}"
        assert wrote.encode("utf8", "backslashreplace").decode() in result.output
        assert get_dataset_spec("folder", root).class_names == ("background", "object")
        header = (tmp_path / name / "classes.yaml").read_text(encoding="utf8").splitlines()[0]
        assert header.endswith(str(tmp_path / name).replace("\n", "?").replace("\udce9", "?"))


def test_an_existing_classes_file_is_never_replaced(tmp_path):
    root = folder(tmp_path / "d", binary(2))
    (tmp_path / "d" / "classes.yaml").write_text("classes: [mine, yours]\n")
    result = init(root)
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: {os.path.join(root, 'classes.yaml')}: exists; `kseg data init` never replaces it (edit it, or "
        "move it away and run `kseg data init` again)"]
    assert (tmp_path / "d" / "classes.yaml").read_text() == "classes: [mine, yours]\n"


def test_index_values_are_listed_and_255_is_a_commented_suggestion(tmp_path):
    rng = np.random.default_rng(1)
    masks = [rng.choice(np.array([0, 3, 7, 255], np.uint8), size=(24, 32)) for _ in range(6)]
    root = folder(tmp_path / "d", masks, split_folders=True)
    assert init(root).exit_code == 0
    text = (tmp_path / "d" / "classes.yaml").read_text()
    assert "  - {name: class_7, value: 7}" in text and "  # - {name: class_255, value: 255}" in text
    assert "Split folders: train, val" in text and "splits:" not in text
    counted = sum(int((mask == 3).sum()) for mask in masks)
    assert f"{counted:,} px" in text
    spec = get_dataset_spec("folder", root)
    assert spec.class_names == ("class_0", "class_3", "class_7")
    assert spec.raw_to_train[7] == 2 and spec.raw_to_train[255] == 255 and spec.valid_raw[255]
    assert verify_dataset(spec, "train").ok


def test_colour_masks_list_their_colours_and_black_as_a_suggestion(tmp_path):
    masks = []
    for index in range(4):
        mask = np.zeros((24, 32, 3), np.uint8)  # black
        mask[:10] = (200, 10, 10)
        mask[10:10 + index + 2] = (10, 200, 10)
        masks.append(mask)
    root = folder(tmp_path / "d", masks)
    result = init(root)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "d" / "classes.yaml").read_text()
    assert "color: [200, 10, 10]" in text and "# ignore_colors: [[0, 0, 0]]" in text
    spec = get_dataset_spec("folder", root)
    assert spec.num_classes == 3 and verify_dataset(spec, "all").ok


def test_files_that_cannot_be_paired_are_said(tmp_path):
    root = folder(tmp_path / "d", binary(3))
    write_png(tmp_path / "d" / "masks" / "orphan.png", binary(1)[0])
    result = init(root)
    assert result.exit_code == 0, result.output
    assert "1 file(s) cannot be paired" in result.output and "orphan.png" in result.output


def test_masks_of_one_value_are_refused(tmp_path):
    root = folder(tmp_path / "d", [np.zeros((24, 32), np.uint8)] * 2)
    result = init(root)
    assert result.exit_code == 1 and "a single class" in result.output
    assert not (tmp_path / "d" / "classes.yaml").exists()
