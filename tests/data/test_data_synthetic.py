"""The synthetic dataset: deterministic by seed, readable as synthetic and as folder."""

import os

import numpy as np
import pytest

from kseg.data import get_dataset_spec
from kseg.data.synthetic import SYNTHETIC_CLASSES, make_scene, write_synthetic_dataset
from kseg.errors import KsegError


def _files(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if name == ".kseg-outputs.json":  # kseg's list of what it wrote, with file times
                continue
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


def test_same_seed_same_files_other_seed_differs(tmp_path):
    write_synthetic_dataset(tmp_path / "a", num_train=4, num_val=2, size=(48, 64), seed=3)
    write_synthetic_dataset(tmp_path / "b", num_train=4, num_val=2, size=(48, 64), seed=3)
    write_synthetic_dataset(tmp_path / "c", num_train=4, num_val=2, size=(48, 64), seed=4)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 13 and a == b  # 6 images + 6 masks + classes.yaml
    assert a["images/train/00000.png"] != c["images/train/00000.png"]


def test_read_back_as_synthetic_and_folder(tmp_path):
    root = write_synthetic_dataset(tmp_path / "synth", num_train=6, num_val=3, size=(48, 64), seed=0)
    for name in ("synthetic", "folder"):
        spec = get_dataset_spec(name, data_dir=root)
        assert spec.class_names == SYNTHETIC_CLASSES and spec.num_classes == 6
        assert len(spec.pairs("train")) == 6 and len(spec.pairs("val")) == 3
        image, mask = spec.read_pair(*spec.pairs("val")[0])
        assert image.shape == (48, 64, 3) and mask.shape == (48, 64)
        assert mask.max() < 6


def test_scenes_use_shapes_not_colours():
    labels, colour_ranges = set(), {}
    for index in range(40):
        image, mask = make_scene(0, index, (64, 64))
        labels.update(np.unique(mask).tolist())
        for label in np.unique(mask):
            colour_ranges.setdefault(int(label), []).append(image[mask == label].mean(axis=0))
    assert labels == set(range(len(SYNTHETIC_CLASSES)))
    # Every class takes a wide range of mean colours: colour alone does not tell the class.
    for label, means in colour_ranges.items():
        assert np.ptp(np.asarray(means), axis=0).max() > 80, label
    # Train and val scenes never coincide.
    image, _ = make_scene(0, 0)
    other, _ = make_scene(0, 1_000_000)
    assert not np.array_equal(image, other)


def test_missing_or_bad_arguments(tmp_path):
    with pytest.raises(KsegError, match="kseg data synth"):
        get_dataset_spec("synthetic", data_dir=str(tmp_path / "missing"))
    with pytest.raises(KsegError, match="at least 32x32"):
        write_synthetic_dataset(tmp_path / "x", size=(16, 64))


def test_default_location_is_generated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("kseg.data.synthetic.DEFAULT_NUM_TRAIN", 3)
    monkeypatch.setattr("kseg.data.synthetic.DEFAULT_NUM_VAL", 2)
    spec = get_dataset_spec("synthetic")
    assert spec.root == os.path.join("data", "synthetic")
    assert len(spec.pairs("train")) == 3
