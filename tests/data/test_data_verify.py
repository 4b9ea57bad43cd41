"""verify_dataset finds every kind of bad input and lists each file."""

import os

import numpy as np
from data_helpers import make_camvid, make_folder, random_image, write_png

from kseg.data import get_dataset_spec
from kseg.data.verify import NO_LABELLED_PIXEL, Problem, verify_dataset


def _camvid(tmp_path, count=10):
    root = make_camvid(str(tmp_path), splits=(("train", count),), list_files=False)
    return get_dataset_spec("camvid", data_dir=root)


def test_clean_split_is_ok(tmp_path):
    report = verify_dataset(_camvid(tmp_path), "train")
    assert report.ok and report.num_pairs == 10 and report.problems == []
    assert "10 pairs checked, OK" in report.summary()


def test_every_bad_input_kind_is_listed(tmp_path):
    spec = _camvid(tmp_path)
    pairs = spec.pairs("train")
    rng = np.random.default_rng(5)
    (img0, _), (img1, _), (img2, _), (img3, _), (_, mask4) = pairs[:5]
    (_, mask5), (_, mask6), (img7, _), (img8, _), (_, mask9) = pairs[5:10]
    with open(img0, "rb") as handle:
        data = handle.read()
    with open(img0, "wb") as handle:
        handle.write(data[:60])  # truncated
    write_png(img1, (random_image(rng, 24, 32).astype(np.uint16) * 257))  # 16-bit
    write_png(img2, np.concatenate([random_image(rng, 24, 32), np.full((24, 32, 1), 255, np.uint8)], axis=2))
    write_png(img3, random_image(rng, 24, 32)[:, :, 0])  # grayscale
    write_png(mask4, np.zeros((20, 32), np.uint8))  # other size
    values = np.zeros((24, 32), np.uint8)
    values[:2] = 40
    values[5, 5] = 13
    write_png(mask5, values)  # out of range
    write_png(mask6, random_image(rng, 24, 32))  # colour mask
    with open(pairs[8][0], "rb") as source, open(img7, "wb") as target:
        target.write(source.read())  # duplicate of img8
    os.remove(mask9)  # missing mask

    report = verify_dataset(spec, "train", progress=True)
    assert not report.ok and report.num_pairs == 10
    messages = {problem.path: problem.message for problem in report.problems}
    assert "not a readable image" in messages[img0] or "truncated" in messages[img0]
    assert "16-bit" in messages[img1]
    assert "RGBA" in messages[img2]
    assert "grayscale" in messages[img3]
    assert "32x20" in messages[mask4]
    assert "40 (64 px)" in messages[mask5] and "13 (1 px)" in messages[mask5]
    assert "colour" in messages[mask6]
    assert "same content" in messages[img8] and img7 in messages[img8]
    assert "file not found" in messages[mask9]
    assert report.unexpected_values[40] == {"pixels": 64, "files": 1, "examples": [mask5]}
    assert report.unexpected_values[13]["pixels"] == 1
    summary = report.summary()
    for kind in ("image: 16-bit", "image: RGBA", "image: grayscale", "mask size differs from image",
                 "mask: unexpected values", "mask: colour mask", "duplicate image", "mask: missing"):
        assert kind in summary, kind
    assert len(report.problems) == 9  # one per bad file
    kinds = {problem.path: problem.kind for problem in report.problems}
    assert kinds[img0] == "image: unreadable" and kinds[mask9] == "mask: missing"
    assert kinds[img2] == "image: RGBA" and kinds[mask6] == "mask: colour mask"
    assert all(isinstance(problem, Problem) and str(problem) == problem.message
               for problem in report.problems)


def test_no_labelled_pixel_is_a_kind_of_its_own(tmp_path):
    spec = _camvid(tmp_path, count=2)
    for _, mask in spec.pairs("train"):
        write_png(mask, np.full((24, 32), 255, np.uint8))
    report = verify_dataset(spec, "train")
    assert [problem.kind for problem in report.problems] == [NO_LABELLED_PIXEL]
    assert "no labelled pixel" in str(report.problems[0])


def test_empty_split_and_missing_root(tmp_path):
    make_folder(str(tmp_path / "data"), counts=(("train", 1),))
    os.makedirs(tmp_path / "data" / "images" / "val")
    os.makedirs(tmp_path / "data" / "masks" / "val")
    spec = get_dataset_spec("folder", data_dir=str(tmp_path / "data"))
    report = verify_dataset(spec, "val")
    assert not report.ok and "no image/mask pairs" in report.problems[0].message
    missing = get_dataset_spec("camvid", data_dir=str(tmp_path / "nowhere"))
    report = verify_dataset(missing, "train")
    assert not report.ok and "root not found" in report.problems[0].message
