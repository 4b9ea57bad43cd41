"""Choices that train slowly for nothing get one warning line naming the better choice."""

import logging
import os

import numpy as np

from kseg.config import TrainConfig
from kseg.data import get_dataset_spec
from kseg.images import write_png
from kseg.training import distribution
from kseg.training.data_checks import check_dataset


def test_fp16_without_a_cuda_gpu_is_said(monkeypatch, caplog):
    monkeypatch.setattr(distribution, "cuda_gpu_visible", lambda backend=None: False)
    with caplog.at_level(logging.WARNING, logger="kseg"):
        assert distribution.resolve_precision("fp16", warn=True) == "mixed_float16"
        assert distribution.resolve_precision("bf16", warn=True) == "mixed_bfloat16"
        distribution.resolve_precision("fp16")  # only where asked (not when comparing checkpoints)
    [record] = caplog.records
    assert "fp16 without a CUDA GPU" in record.getMessage() and "auto" in record.getMessage()
    assert distribution.precision_warning("fp16", cuda_gpu=True) is None


def _dataset(root, sizes):
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(sizes):
        write_png(os.path.join(root, "images", "train", f"{index}.png"),
                  rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        write_png(os.path.join(root, "masks", "train", f"{index}.png"),
                  rng.integers(0, 2, (height, width), dtype=np.uint8))
    with open(os.path.join(root, "classes.yaml"), "w") as handle:
        handle.write("classes: [a, b]\n")
    return str(root)


def test_a_crop_larger_than_the_images_is_said(tmp_path, caplog):
    root = _dataset(tmp_path / "d", [(24, 32), (24, 32), (40, 48)])
    spec = get_dataset_spec("folder", root)
    for crop, warned in (([32, 32], True), ([24, 32], False), ("none", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kseg"):
            check_dataset(TrainConfig(model="fcn8s", data="folder", data_dir=root, crop=crop), spec)
        assert ("larger than 2 of the 3 training images" in caplog.text) == warned, (crop, caplog.text)
        if warned:
            assert "from 24x32 to 40x48" in caplog.text and "--crop none" in caplog.text
            assert "at most 24x32" in caplog.text
