"""Dataset specs: label mappings, layouts, and errors naming the file."""

import os

import numpy as np
import pytest
from cityscapesscripts.helpers import labels as cs_labels
from data_helpers import block_mask, make_camvid, make_folder, random_image, write_png
from PIL import Image

from kseg.data import DATASET_NAMES, get_dataset_spec
from kseg.data.cityscapes import label_id_to_train_id_table
from kseg.errors import KsegError


def test_dataset_names():
    assert DATASET_NAMES == ("cityscapes", "voc", "camvid", "folder", "synthetic")
    with pytest.raises(KsegError, match="unknown dataset"):
        get_dataset_spec("imagenet", data_dir=".")


# -- Cityscapes --------------------------------------------------------------------------

def test_cityscapes_mapping_equals_official_table_for_every_id():
    table = label_id_to_train_id_table()
    by_id = {label.id: label for label in cs_labels.labels}
    for value in range(256):
        label = by_id.get(value)
        expected = label.trainId if label is not None and 0 <= label.trainId < 255 else 255
        assert table[value] == expected, value
    assert sorted(set(table.tolist()) - {255}) == list(range(19))


def _make_cityscapes(root, rng):
    size = (16, 24)
    image_path = os.path.join(root, "leftImg8bit", "train", "aachen", "aachen_000000_000019_leftImg8bit.png")
    mask_path = os.path.join(root, "gtFine", "train", "aachen", "aachen_000000_000019_gtFine_labelIds.png")
    write_png(image_path, random_image(rng, *size))
    ids = np.arange(16 * 24, dtype=np.uint8).reshape(size) % 34
    write_png(mask_path, ids)
    return image_path, mask_path, ids


def test_cityscapes_layout_and_read_pair(tmp_path):
    rng = np.random.default_rng(0)
    image_path, mask_path, ids = _make_cityscapes(str(tmp_path), rng)
    spec = get_dataset_spec("cityscapes", data_dir=str(tmp_path))
    assert spec.num_classes == 19 and len(spec.palette) == 19
    assert spec.class_names[0] == "road" and spec.ignore_index == 255
    assert spec.pairs("train") == [(image_path, mask_path)]
    image, mask = spec.read_pair(image_path, mask_path)
    assert image.dtype == np.uint8 and image.shape == (16, 24, 3)
    by_id = {label.id: label.trainId for label in cs_labels.labels}
    expected = np.vectorize(lambda v: by_id[v] if 0 <= by_id[v] < 255 else 255)(ids)
    np.testing.assert_array_equal(mask, expected)
    # Back to official ids: every trained id returns to its label id, ignore -> 0.
    encoded = spec.encode_label_ids(mask)
    trained = mask != 255
    np.testing.assert_array_equal(encoded[trained], ids[trained])
    assert (encoded[~trained] == 0).all()


def test_cityscapes_root_with_glob_characters(tmp_path):
    # a root named like a glob pattern ("[1]") is a folder name, not a pattern
    root = str(tmp_path / "city[1]")
    image_path, mask_path, _ = _make_cityscapes(root, np.random.default_rng(0))
    assert get_dataset_spec("cityscapes", data_dir=root).pairs("train") == [(image_path, mask_path)]


def test_cityscapes_env_variable_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    assert get_dataset_spec("cityscapes").root == str(tmp_path)
    monkeypatch.delenv("CITYSCAPES_DATASET")
    with pytest.raises(KsegError, match="CITYSCAPES_DATASET"):
        get_dataset_spec("cityscapes")
    with pytest.raises(KsegError, match="root not found"):
        get_dataset_spec("cityscapes", data_dir=str(tmp_path / "nope")).pairs("train")
    with pytest.raises(KsegError, match="leftImg8bit"):
        get_dataset_spec("cityscapes", data_dir=str(tmp_path)).pairs("train")


def test_cityscapes_rejects_colour_ids(tmp_path):
    rng = np.random.default_rng(1)
    image_path, mask_path, _ = _make_cityscapes(str(tmp_path), rng)
    write_png(mask_path, np.full((16, 24), 100, np.uint8))
    spec = get_dataset_spec("cityscapes", data_dir=str(tmp_path))
    with pytest.raises(KsegError, match="gtFine_labelIds.png: mask values 100"):
        spec.read_pair(image_path, mask_path)


# -- Pascal VOC --------------------------------------------------------------------------

def _make_voc(root, rng, ids=("2007_000032", "2007_000039")):
    from kseg.labels import default_palette

    flat_palette = [value for colour in default_palette(256) for value in colour]
    for image_id in ids:
        os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
        Image.fromarray(random_image(rng, 20, 30)).save(os.path.join(root, "JPEGImages", image_id + ".jpg"))
        mask = block_mask(rng, 20, 30, values=range(21), block=5)
        mask[0, :] = 255  # the object border band
        palette_image = Image.fromarray(mask, mode="P")
        palette_image.putpalette(flat_palette)
        os.makedirs(os.path.join(root, "SegmentationClass"), exist_ok=True)
        palette_image.save(os.path.join(root, "SegmentationClass", image_id + ".png"))
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "Segmentation", "train.txt"), "w") as handle:
        handle.write("\n".join(ids) + "\n")


def test_voc_palette_masks_decode_to_indices_with_border_ignored(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    _make_voc(str(root), np.random.default_rng(0))
    spec = get_dataset_spec("voc", data_dir=str(tmp_path))  # finds VOCdevkit/VOC2012
    assert spec.root == str(root) and spec.num_classes == 21
    assert spec.palette[1] == (128, 0, 0) and spec.palette[15] == (192, 128, 128)
    pairs = spec.pairs("train")
    assert len(pairs) == 2
    image, mask = spec.read_pair(*pairs[0])
    stored = np.array(Image.open(pairs[0][1]))
    np.testing.assert_array_equal(mask, stored)
    assert (mask[0] == 255).all() and mask.max() == 255 and mask[1:].max() <= 20
    with pytest.raises(KsegError, match="val.txt"):
        spec.pairs("val")


# -- CamVid ------------------------------------------------------------------------------

def test_camvid_void_11_becomes_255(tmp_path):
    make_camvid(str(tmp_path))
    spec = get_dataset_spec("camvid", data_dir=str(tmp_path))
    assert spec.num_classes == 11 and spec.class_names[-1] == "Bicyclist"
    pairs = spec.pairs("train")
    assert len(pairs) == 4 and pairs[0][1].endswith(os.path.join("trainannot", "train_000.png"))
    for pair in pairs:
        raw = np.array(Image.open(pair[1]))
        _, mask = spec.read_pair(*pair)
        np.testing.assert_array_equal(mask[raw == 11], 255)
        np.testing.assert_array_equal(mask[raw < 11], raw[raw < 11])
    assert spec.splits() == ("train", "val")


def test_camvid_without_list_files_and_bad_values(tmp_path):
    make_camvid(str(tmp_path), list_files=False)
    spec = get_dataset_spec("camvid", data_dir=str(tmp_path))
    image_path, mask_path = spec.pairs("val")[0]
    write_png(mask_path, np.full((24, 32), 12, np.uint8))
    with pytest.raises(KsegError) as error:
        spec.read_pair(image_path, mask_path)
    assert mask_path in str(error.value) and "12" in str(error.value)
    with pytest.raises(KsegError, match="no CamVid split 'test'"):
        spec.pairs("test")
    with pytest.raises(KsegError, match="--data-dir"):
        get_dataset_spec("camvid")


# -- folder ------------------------------------------------------------------------------

def test_folder_split_folders_and_index_masks(tmp_path):
    make_folder(str(tmp_path))
    spec = get_dataset_spec("folder", data_dir=str(tmp_path))
    assert spec.class_names == ("class0", "class1", "class2")
    assert spec.palette[1] == (80, 175, 7)
    assert len(spec.pairs("train")) == 4 and len(spec.pairs("val")) == 2
    assert spec.splits() == ("train", "val")
    image, mask = spec.read_pair(*spec.pairs("train")[0])
    assert set(np.unique(mask)) <= {0, 1, 2, 255}
    with pytest.raises(KsegError, match="no split folder 'test'"):
        spec.pairs("test")


def test_folder_without_split_folders_is_one_pool_divided_for_validation(tmp_path):
    make_folder(str(tmp_path), counts=(("all", 3),), split_folders=False, with_colours=False)
    spec = get_dataset_spec("folder", data_dir=str(tmp_path))
    train, val = spec.pairs("train"), spec.pairs("val")
    assert len(train) == 2 and len(val) == 1 and not set(train) & set(val)
    assert spec.splits() == ("all",) and sorted(train + val) == spec.pairs("all") == spec.pairs("test")
    assert len(set(spec.palette)) == 3  # default colours when none are given


def test_folder_colour_masks_map_through_palette(tmp_path):
    make_folder(str(tmp_path))
    spec = get_dataset_spec("folder", data_dir=str(tmp_path))
    image_path, mask_path = spec.pairs("train")[0]
    index = block_mask(np.random.default_rng(3), 24, 32, values=[0, 1, 2])
    colours = np.asarray(spec.palette, np.uint8)[index]
    write_png(mask_path, colours)
    _, mask = spec.read_pair(image_path, mask_path)
    np.testing.assert_array_equal(mask, index)
    colours[5, 7] = (1, 2, 3)
    write_png(mask_path, colours)
    with pytest.raises(KsegError) as error:
        spec.read_pair(image_path, mask_path)
    assert mask_path in str(error.value) and "(1, 2, 3)" in str(error.value)


def test_folder_classes_file_errors(tmp_path):
    make_folder(str(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [only_one]\n")
    with pytest.raises(KsegError, match="at least 2 classes"):
        get_dataset_spec("folder", data_dir=str(tmp_path), classes_file=str(bad))
    bad.write_text("classes:\n  - {name: a, color: [1, 2]}\n  - b\n")
    with pytest.raises(KsegError, match=r"\[r, g, b\]"):
        get_dataset_spec("folder", data_dir=str(tmp_path), classes_file=str(bad))
    with pytest.raises(KsegError, match="classes file not found"):
        get_dataset_spec("folder", data_dir=str(tmp_path), classes_file=str(tmp_path / "missing.yaml"))
    with pytest.raises(KsegError, match="--classes applies"):
        get_dataset_spec("camvid", data_dir=str(tmp_path), classes_file=str(bad))
    with pytest.raises(KsegError, match="root not found"):
        get_dataset_spec("folder", data_dir=str(tmp_path / "missing"))
