"""Labels that would train on nothing are caught by `data verify` and by `train`, before any work.

The common case: binary masks exported as 0 (background) and 255 (object) with the classes
[background, object]. 255 is kseg's ignore label, so every object pixel is ignored, the
only class left is background, and a model trained on it scores a "perfect" mIoU of 1.0.
"""

import os

import numpy as np
import pytest
from data_helpers import random_image, write_png

from kseg.config import TrainConfig
from kseg.data import get_dataset_spec
from kseg.data.verify import ONE_CLASS, verify_dataset
from kseg.errors import KsegError


def binary_folder(root, foreground=255, counts=(("train", 4), ("val", 2)), classes=("background", "object"),
                  shapes=True, road=False, shape=(10, 14)):
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "classes.yaml"), "w") as handle:
        handle.write("classes:\n" + "".join(f"  - {name}\n" for name in classes))
    for split, count in counts:
        for index in range(count):
            mask = np.zeros((24, 32), np.uint8)
            if shapes:
                top, left = rng.integers(0, 24 - shape[0]), rng.integers(0, 32 - shape[1])
                mask[top:top + shape[0], left:left + shape[1]] = foreground
            if road:  # class 1 on the top rows' background
                mask[:12] = np.where(mask[:12] == 0, 1, mask[:12])
            write_png(os.path.join(root, "images", split, f"{index}.png"), random_image(rng, 24, 32))
            write_png(os.path.join(root, "masks", split, f"{index}.png"), mask)
    return root


def test_binary_masks_stored_as_0_and_255_are_a_problem_of_the_split(tmp_path):
    spec = get_dataset_spec("folder", binary_folder(str(tmp_path / "d")))
    report = verify_dataset(spec, "train")
    assert not report.ok
    [problem] = [problem for problem in report.problems if problem.kind == ONE_CLASS]
    assert "every labelled pixel" in problem.message and "background" in problem.message
    assert "object" in problem.message and "255" in problem.message and "0/255" in problem.message
    assert ONE_CLASS in report.summary()


def test_the_same_masks_stored_as_0_and_1_are_fine(tmp_path):
    spec = get_dataset_spec("folder", binary_folder(str(tmp_path / "d"), foreground=1))
    report = verify_dataset(spec, "train")
    assert report.ok, report.summary()
    assert report.class_pixels[0] > 0 and report.class_pixels[1] > 0


def test_a_split_of_one_class_without_any_ignored_pixel_is_refused_too(tmp_path):
    spec = get_dataset_spec("folder", binary_folder(str(tmp_path / "d"), shapes=False))
    report = verify_dataset(spec, "train")
    assert [problem.kind for problem in report.problems] == [ONE_CLASS]
    assert "no other class occurs" in report.problems[0].message


def test_a_class_missing_while_much_is_ignored_is_a_warning(tmp_path):
    # three classes; the third stored as 255 (42% of the pixels), the first two present
    root = binary_folder(str(tmp_path / "d"), classes=("background", "road", "car"), road=True, shape=(16, 20))
    spec = get_dataset_spec("folder", root)
    report = verify_dataset(spec, "train")
    assert report.ok, report.summary()  # a class may be absent from a split: only a warning
    messages = [message for _, message in report.warnings]
    assert any("classes car never occur" in message and "255" in message for message in messages)


@pytest.mark.parametrize("skip_bad", [False, True])
def test_train_refuses_before_any_work(tmp_path, skip_bad):
    from kseg.training import train

    data = binary_folder(str(tmp_path / "d"))
    run_dir = tmp_path / "run"
    config = TrainConfig(model="fcn8s_vgg16bn", data="folder", data_dir=data, weights="none", width=0.0625,
                         epochs=1, batch_size=2, run_dir=str(run_dir), skip_bad=skip_bad,
                         mixed_precision="off")  # fmt: skip
    with pytest.raises(KsegError, match="every labelled pixel .* is background"):
        train(config, verbose=0)
    assert not run_dir.exists()


def test_a_jpeg_mask_is_reported_as_lossy_not_as_missing(tmp_path):
    import cv2

    root = binary_folder(str(tmp_path / "d"), foreground=1)
    mask_path = os.path.join(root, "masks", "train", "0.png")
    mask = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
    os.remove(mask_path)
    cv2.imwrite(os.path.join(root, "masks", "train", "0.jpg"), mask)
    report = verify_dataset(get_dataset_spec("folder", root), "train")
    assert [problem.kind for problem in report.problems] == ["mask: lossy format"]
    assert report.problems[0].path.endswith("0.jpg")


def test_without_split_folders_validation_holds_out_a_share_of_the_images(tmp_path, caplog):
    import logging

    from kseg.training.data_checks import check_validation_split

    pooled = str(tmp_path / "pooled")
    binary_folder(pooled, foreground=1, counts=(("train", 16), ("val", 4)))
    for split in ("train", "val"):  # one pool: images/*.png, masks/*.png
        for kind in ("images", "masks"):
            folder = os.path.join(pooled, kind, split)
            for name in os.listdir(folder):
                os.rename(os.path.join(folder, name), os.path.join(pooled, kind, f"{split}{name}"))
            os.rmdir(folder)
    spec = get_dataset_spec("folder", pooled)
    train, val = spec.pairs("train"), spec.pairs("val")
    assert len(val) == 2 and len(train) == 18 and not set(train) & set(val)  # 10% of 20
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kseg"):
        check_validation_split(TrainConfig(model="fcn8s", data="folder", data_dir=pooled), spec)
    assert "shares" not in caplog.text, caplog.text
    assert "validation: 2 of the 20 images" in caplog.text and "seed 0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kseg"):  # without validation, the held-out share is said
        check_validation_split(TrainConfig(model="fcn8s", data="folder", data_dir=pooled, val_split="none"), spec)
    assert "leaves out the 2 image(s)" in caplog.text and "--train-split all to train on all 20" in caplog.text
    # another seed holds out other images, and the seed is what decides (not the listing)
    with open(os.path.join(pooled, "classes.yaml"), "a") as handle:
        handle.write("splits: {val_fraction: 0.25, seed: 7}\n")
    reseeded = get_dataset_spec("folder", pooled)
    assert len(reseeded.pairs("val")) == 5 and reseeded.pairs("val") != val
    assert get_dataset_spec("folder", pooled).pairs("val") == reseeded.pairs("val")
    # validating on the whole pool, or on a dataset's training folder, is still said
    for root, val_split, warned in ((pooled, "all", True), (binary_folder(str(tmp_path / "split"), foreground=1),
                                                            "val", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kseg"):
            config = TrainConfig(model="fcn8s", data="folder", data_dir=root, val_split=val_split)
            check_validation_split(config, get_dataset_spec("folder", root))
        assert ("with the training split" in caplog.text) == warned, caplog.text
