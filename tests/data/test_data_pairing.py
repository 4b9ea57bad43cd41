"""Files that cannot be paired are named one by one and left out, never paired by guess or
dropped in silence; the rest of the split is used."""

import logging
import os

import numpy as np
from data_helpers import block_mask, make_camvid, random_image, write_png

from kseg.config import TrainConfig
from kseg.data import get_dataset_spec
from kseg.data.spec import (
    IMAGE_WITHOUT_MASK,
    IMAGES_SHARE_A_NAME,
    LISTED_TWICE,
    MASK_WITHOUT_IMAGE,
    MASKS_SHARE_A_NAME,
)
from kseg.data.verify import verify_dataset
from kseg.training.data_checks import check_dataset


def messy_folder(root):
    """A pool: a, b, c pair; d.png and d.jpg share d's mask; e has no mask; orphan has no
    image; f has two masks (f.png, f.bmp)."""
    rng = np.random.default_rng(0)
    for stem in ("a", "b", "c", "d", "e", "f"):
        write_png(os.path.join(root, "images", f"{stem}.png"), random_image(rng, 24, 32))
    write_png(os.path.join(root, "images", "d.jpg"), random_image(rng, 24, 32))
    for name in ("a.png", "b.png", "c.png", "d.png", "orphan.png", "f.png", "f.bmp"):
        write_png(os.path.join(root, "masks", name), block_mask(rng, 24, 32, values=[0, 1]))
    with open(os.path.join(root, "classes.yaml"), "w") as handle:
        handle.write("classes: [background, thing]\n")
    return str(root)


def test_each_file_that_cannot_be_paired_is_named_and_left_out(tmp_path):
    root = messy_folder(tmp_path / "d")
    spec = get_dataset_spec("folder", root)
    assert [os.path.basename(image) for image, _ in spec.pairs("all")] == ["a.png", "b.png", "c.png"]
    kinds = {os.path.relpath(issue.path, root): issue.kind for issue in spec.pairing_issues("all")}
    assert kinds == {
        os.path.join("images", "d.jpg"): IMAGES_SHARE_A_NAME, os.path.join("images", "d.png"): IMAGES_SHARE_A_NAME,
        os.path.join("images", "e.png"): IMAGE_WITHOUT_MASK, os.path.join("masks", "orphan.png"): MASK_WITHOUT_IMAGE,
        os.path.join("images", "f.png"): MASKS_SHARE_A_NAME,
    }
    report = verify_dataset(spec, "all")
    assert report.num_pairs == 3 and len(report.problems) == 5
    messages = {os.path.basename(problem.path): problem.message for problem in report.problems}
    assert "no image named orphan" in messages["orphan.png"] and "remove the mask" in messages["orphan.png"]
    assert "add its mask" in messages["e.png"] and "d.jpg, d.png share the name" in messages["d.png"]
    assert "f.bmp, f.png" in messages["f.png"] and "keep one of them" in messages["f.png"]
    assert "pairing: mask without image" in report.summary()


def test_training_leaves_them_out_with_one_warning_line(tmp_path, caplog):
    root = messy_folder(tmp_path / "d")
    spec = get_dataset_spec("folder", root)
    with caplog.at_level(logging.WARNING, logger="kseg"):
        skipped = check_dataset(TrainConfig(model="fcn8s", data="folder", data_dir=root, train_split="all"), spec)
        spec.pairs("all")  # said once per split, not at every listing
    assert skipped == 0  # nothing refused, nothing for --skip-bad to do
    lines = [record.getMessage() for record in caplog.records if "cannot be paired" in record.getMessage()]
    assert len(lines) == 1
    assert "5 file(s)" in lines[0] and "d.jpg (another image has its name)" in lines[0] and "and 2 more" in lines[0]
    # without verify's listing first, the first listing of a split says it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kseg"):
        fresh = get_dataset_spec("folder", root)
        fresh.pairs("val")
        fresh.pairs("train")  # the same pool
    assert len([record for record in caplog.records if "cannot be paired" in record.getMessage()]) == 1


def test_an_entry_listed_twice_is_used_once_and_said(tmp_path, caplog):
    root = make_camvid(str(tmp_path / "camvid"), splits=(("train", 3),))
    with open(os.path.join(root, "train.txt")) as handle:
        first = handle.readline()
    with open(os.path.join(root, "train.txt"), "a") as handle:
        handle.write(first)
    spec = get_dataset_spec("camvid", root)
    assert len(spec.pairs("train")) == 3
    report = verify_dataset(spec, "train")
    [problem] = report.problems
    assert problem.kind == LISTED_TWICE and "listed 2 times" in problem.message and "used once" in problem.message
    with caplog.at_level(logging.WARNING, logger="kseg"):
        assert check_dataset(TrainConfig(model="fcn8s", data="camvid", data_dir=root), spec) == 0
    assert "1 file(s) of the split 'train' cannot be paired" in caplog.text
