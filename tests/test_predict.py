"""Whole-image, tiled and test-time-augmented inference (kseg/inference.py; collecting images in kseg/prediction.py)."""

import keras
import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.inference import TTA, iter_tiled_logits, parse_tta, predict_labels, predict_logits, tile_starts, tiled_logits
from kseg.prediction import PredictOptions, check_output_formats, collect_images


def local_model(radius, classes=3, seed=0):
    """Plain 3x3 convolutions ('same' padding): each output sees `radius` pixels around it."""
    layers = [keras.Input((None, None, 3))]
    layers += [keras.layers.Rescaling(1 / 255.0)]
    layers += [keras.layers.Conv2D(4, 3, padding="same", activation="tanh") for _ in range(radius)]
    layers += [keras.layers.Conv2D(classes, 1)]
    return randomize_weights(keras.Sequential(layers), seed, scale=0.5)


@pytest.fixture(scope="module")
def fcn():
    from kseg.models import create_model

    return randomize_weights(create_model("fcn8s", num_classes=3, weights=None, width=0.0625))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)


def test_whole_image_logits_match_the_model(fcn, image):
    logits = predict_logits(fcn, image)
    assert logits.shape == (45, 70, 3) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, np.asarray(fcn(image[None]))[0], atol=1e-5)
    labels = predict_labels(fcn, image)
    assert labels.dtype == np.uint8 and (labels == logits.argmax(-1)).all()


def test_tile_starts_cover_and_overlap():
    assert tile_starts(100, 200, 10) == [0]
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    assert tile_starts(101, 40, 10) == [0, 30, 60, 61]


@pytest.mark.parametrize("blend", ["center", "mean"])
def test_tiled_equals_whole_for_a_pointwise_model(blend, image):
    model = local_model(radius=0)
    whole = predict_logits(model, image)
    tiled = tiled_logits(model, image, (16, 24), overlap=6, blend=blend)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("tile,overlap", [((16, 24), 4), ((20, 20), 5), ((13, 31), 8)])
def test_center_blend_is_exact_when_the_receptive_field_fits_in_half_the_overlap(
    tile, overlap, image
):
    # Two 3x3 convolutions see 2 pixels to each side; overlap // 2 >= 2.
    model = local_model(radius=2)
    whole = predict_logits(model, image)
    tiled = tiled_logits(model, image, tile, overlap=overlap, blend="center")
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # Too little overlap, or averaging in the tile edges, is not exact, and the test can tell.
    assert np.abs(tiled_logits(model, image, tile, overlap=2, blend="center") - whole).max() > 1e-3
    assert np.abs(tiled_logits(model, image, tile, overlap=overlap, blend="mean") - whole).max() > 1e-3


def test_fcn_tile_larger_than_image_is_whole_image(fcn, image):
    np.testing.assert_allclose(
        tiled_logits(fcn, image, (64, 96), overlap=16), predict_logits(fcn, image), atol=1e-5
    )


def test_tiled_strips_are_bounded_and_ordered(image):
    model = local_model(radius=1)
    strips = list(iter_tiled_logits(model, image, (16, 16), overlap=4))
    tops = [top for top, _ in strips]
    assert tops[0] == 0 and tops == sorted(tops)
    assert sum(len(logits) for _, logits in strips) == image.shape[0]
    assert max(len(logits) for _, logits in strips) <= 16
    labels = predict_labels(model, image, tile=(16, 16), overlap=4)
    assert labels.shape == image.shape[:2]


def test_tiling_rejects_bad_overlap(image):
    with pytest.raises(KsegError, match="overlap"):
        tiled_logits(local_model(0), image, (16, 16), overlap=16)


def test_flip_tta_averages_flipped_logits(image):
    model = local_model(radius=1)
    plain = predict_logits(model, image)
    flipped = predict_logits(model, image[:, ::-1])[:, ::-1]
    np.testing.assert_allclose(predict_logits(model, image, TTA(flip=True)), (plain + flipped) / 2,
                               atol=1e-5)


def test_scale_tta_averages_the_rescaled_logits_and_unit_scale_is_identity(fcn, image):
    from kseg.inference import resize

    logits = predict_logits(fcn, image, TTA(scales=(0.5, 1.0, 1.5)))
    assert logits.shape == (45, 70, 3)
    expected = np.mean(
        [resize(predict_logits(fcn, resize(image, size)), (45, 70)) for size in ((22, 35), (45, 70), (68, 105))],
        axis=0,
    )
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert np.abs(logits - predict_logits(fcn, image)).max() > 1e-3  # the other scales count
    np.testing.assert_allclose(predict_logits(fcn, image, TTA(scales=(1.0,))),
                               predict_logits(fcn, image), atol=1e-6)


def test_parse_tta_and_size():
    assert parse_tta(["flip"]) == TTA(flip=True)
    assert parse_tta(["flip+scales=0.75,1,1.25"]) == TTA(True, (0.75, 1.0, 1.25))
    assert parse_tta(["scales=0.5,1", "flip"]) == TTA(True, (0.5, 1.0))
    assert parse_tta([]) == TTA() and parse_tta(["none"]) == TTA()
    with pytest.raises(KsegError, match="unknown augmentation"):
        parse_tta(["rotate"])
    for bad in ("scales=0,1", "scales=inf", "scales=nan", "scales=1e9", "scales=-1", "scales=x"):
        with pytest.raises(KsegError, match="--tta"):
            parse_tta([bad])
    with pytest.raises(KsegError, match="--tta scales"):
        TTA(scales=(float("nan"),))


def test_cityscapes_label_ids():
    from kseg.data.cityscapes import train_ids_to_label_ids

    ids = train_ids_to_label_ids(np.array([[0, 1, 10, 18]], np.uint8), strict=True)
    assert ids.tolist() == [[7, 8, 23, 33]]
    with pytest.raises(KsegError, match="19"):
        train_ids_to_label_ids(np.array([[19]], np.uint8), strict=True)


def test_collect_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    for name in ("a/x.png", "a/sub/x.png", "a/notes.txt", "y.jpg"):
        (tmp_path / name).write_bytes(b"")
    items, problems = collect_images(
        [str(tmp_path / "a"), str(tmp_path / "*.jpg"), str(tmp_path / "missing.png")]
    )
    assert [name for _, name in items] == ["sub/x", "x", "y"]
    assert len(problems) == 1 and "missing.png: file not found" in problems[0]
    # two files whose outputs share a name: just those two are left out, each named
    (tmp_path / "a" / "x.jpg").write_bytes(b"")
    items, problems = collect_images([str(tmp_path / "a"), str(tmp_path / "y.jpg")])
    assert [name for _, name in items] == ["sub/x", "y"]
    assert len(problems) == 2 and all("skipped" in problem and "'x'" in problem for problem in problems)
    assert {problem.split(":")[0] for problem in problems} == {str(tmp_path / "a" / "x.png"),
                                                                 str(tmp_path / "a" / "x.jpg")}


def test_a_subfolder_that_cannot_be_listed_is_named_not_passed_over(tmp_path, monkeypatch):
    import os

    (tmp_path / "a" / "locked").mkdir(parents=True)
    (tmp_path / "a" / "x.png").write_bytes(b"")
    locked = str(tmp_path / "a" / "locked")
    scandir = os.scandir

    def refuse_locked(path="."):  # as for a folder without read permission (tests run as root)
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    with pytest.raises(KsegError, match=f"^{locked}: folder cannot be read \\(Permission denied\\)$"):
        collect_images([str(tmp_path / "a")])


def test_predict_options_hold_each_output_once():
    options = PredictOptions(formats=["cityscapes-ids", "cityscapes-ids"])
    assert options.formats == ("cityscapes-ids",)
    assert check_output_formats(19, options.formats, "m.keras") == []  # one output: no "folder of its own"
    assert PredictOptions(formats=(kind for kind in ["labels"])).formats == ("labels",)  # not an empty iterator


@pytest.mark.parametrize("folder", ["çıktılar", "straße"])
def test_a_case_folding_filesystem_is_seen_from_an_out_folder_named_with_i_or_sharp_s(tmp_path, monkeypatch, folder):
    """ı and ß have no case pair to swap back to ("ı".swapcase() is "I", whose own is
    "i"), so such a folder name says nothing of the filesystem: the names in it do."""
    import os

    from kseg.prediction import folds_case

    out = tmp_path / folder
    out.mkdir()
    (out / "photo.png").write_bytes(b"")

    def samefile(first, second):  # a filesystem that folds case, as macOS does by default
        if first.lower() != second.lower():
            raise FileNotFoundError(second)
        return True

    monkeypatch.setattr(os.path, "samefile", samefile)
    assert folds_case(str(out))


@pytest.mark.parametrize(
    ("first", "second", "clash"), [("STRASSE", "straße", False), ("Photo", "photo", True), ("ΟΔΟΣ 1", "οδοσ 1", True)]
)
def test_outputs_clash_on_a_case_folding_filesystem_as_it_maps_case_one_character_at_a_time(
    tmp_path, monkeypatch, first, second, clash
):
    """NTFS and APFS map case one character at a time: "straße" and "STRASSE" are two
    names there (str.casefold makes ß "ss"), "ΟΔΟΣ 1" and "οδοσ 1" one (str.lower makes
    that Σ a final ς)."""
    import os

    from kseg.prediction import plan_outputs

    items = []
    for folder, name in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.png").write_bytes(b"")
        items.append((str(tmp_path / folder / f"{name}.png"), name))

    def samefile(first, second):  # a filesystem that folds case, as macOS does by default
        if first.lower() != second.lower():
            raise FileNotFoundError(second)
        return True

    monkeypatch.setattr(os.path, "samefile", samefile)
    plan = plan_outputs(items, [str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "out"), ("labels",))
    assert len(plan.skipped) == (2 if clash else 0) and len(plan.outputs) == (0 if clash else 2)


def test_a_folder_input_leaves_out_hidden_subfolders_such_as_a_killed_writes_temporary_folder(tmp_path):
    for name in ("x.png", ".synthetic.0a1b2c3d.tmp/images/val/00000.png", ".ipynb_checkpoints/x-checkpoint.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    items, problems = collect_images([str(tmp_path)])
    assert [name for _, name in items] == ["x"] and problems == []
