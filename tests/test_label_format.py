"""Label maps say what their values are, and `evaluate --predictions` believes them, not a guess."""

import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg.errors import KsegError
from kseg.evaluation import evaluate_predictions
from kseg.images import read_mask, write_png
from kseg.label_maps import CITYSCAPES_IDS, TRAIN_IDS, declared_format, label_map_text
from kseg.prediction import encode_png

STEM = "frankfurt_000000_000294"
ROAD_LABEL_ID = 7  # train id 0; as a train id, 7 is "traffic sign"


def _cityscapes(root, truth):
    """One val image of Cityscapes whose ground truth label ids are `truth`."""
    image = root / "leftImg8bit" / "val" / "frankfurt" / f"{STEM}_leftImg8bit.png"
    write_png(image, np.random.default_rng(0).integers(0, 256, (*truth.shape, 3), dtype=np.uint8))
    write_png(root / "gtFine" / "val" / "frankfurt" / f"{STEM}_gtFine_labelIds.png", truth)
    return image


def _write(path, array, text=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(encode_png(array, text))
    return str(path)


def test_label_maps_carry_their_format_and_keep_their_values():
    labels = np.random.default_rng(1).integers(0, 19, (30, 41)).astype(np.uint8)
    data = encode_png(labels, label_map_text(TRAIN_IDS, 19))
    assert declared_format(data) == (TRAIN_IDS, 19)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), labels)
    assert declared_format(encode_png(labels)) is None  # pictures carry nothing
    with pytest.raises(KsegError, match="label map format"):
        label_map_text("ids", 19)


def test_a_class_count_of_other_digits_is_no_count():
    labels = np.zeros((4, 5), np.uint8)
    for count in ("\u00b2", "1\u00b9", "\u0663"):  # superscripts (Latin-1, as tEXt holds), Arabic-Indic 3
        text = {"kseg:labels": TRAIN_IDS, "kseg:classes": count}
        assert declared_format(encode_png(labels, text)) == (TRAIN_IDS, None)


def test_predict_cityscapes_ids_then_evaluate_scores_them_as_label_ids(tmp_path):
    """The model predicts road everywhere: label id 7, which as a train id is traffic sign.
    Its values (all below 19) fit both readings; only the file's declaration tells."""
    from kseg.models import create_model

    model = create_model("fcn32s", num_classes=19, weights=None, width=0.0625)  # score layers at zero: road
    model.save(tmp_path / "city.keras")
    image = _cityscapes(tmp_path / "cityscapes", np.full((40, 64), ROAD_LABEL_ID, np.uint8))
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(image), "--model", str(tmp_path / "city.keras"),
                                 "--out", str(tmp_path / "results"), "--format", "cityscapes-ids"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "results" / f"{STEM}_leftImg8bit.png"
    assert set(np.unique(read_mask(written))) == {ROAD_LABEL_ID}
    with open(written, "rb") as handle:
        assert declared_format(handle.read()) == (CITYSCAPES_IDS, 19)
    result = runner.invoke(cli, ["evaluate", "--predictions", str(tmp_path / "results"), "--data", "cityscapes",
                                 "--data-dir", str(tmp_path / "cityscapes"), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mean_iou"] == 1.0 and metrics["pixel_accuracy"] == 1.0
    # Said the other way round, the files' declaration wins over nothing: a contradiction is refused.
    result = runner.invoke(cli, ["evaluate", "--predictions", str(tmp_path / "results"), "--data", "cityscapes",
                                 "--data-dir", str(tmp_path / "cityscapes"), "--label-format", "train-ids"])
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "cityscapes-ids" in line and "--label-format" in line


def test_files_that_say_nothing_and_fit_both_readings_need_the_option(tmp_path):
    from kseg.data import get_dataset_spec

    _cityscapes(tmp_path / "cityscapes", np.full((24, 32), ROAD_LABEL_ID, np.uint8))
    spec = get_dataset_spec("cityscapes", str(tmp_path / "cityscapes"))
    _write(tmp_path / "plain" / f"{STEM}_leftImg8bit.png", np.full((24, 32), ROAD_LABEL_ID, np.uint8))
    with pytest.raises(KsegError, match="--label-format train-ids or --label-format label-ids"):
        evaluate_predictions(tmp_path / "plain", spec, "val", progress=False)
    as_label_ids = evaluate_predictions(tmp_path / "plain", spec, "val", label_format="label-ids", progress=False)
    as_train_ids = evaluate_predictions(tmp_path / "plain", spec, "val", label_format="train-ids", progress=False)
    assert as_label_ids.scores["mean_iou"] == 1.0 and as_train_ids.scores["mean_iou"] == 0.0
    # values no train id can take prove label ids: no option needed
    sky = np.full((24, 32), 23, np.uint8)
    _write(tmp_path / "proved" / f"{STEM}_leftImg8bit.png", sky)
    assert evaluate_predictions(tmp_path / "proved", spec, "val", progress=False).num_images == 1


def test_declarations_that_disagree_are_refused(tmp_path):
    from kseg.data import get_dataset_spec

    _cityscapes(tmp_path / "cityscapes", np.full((24, 32), ROAD_LABEL_ID, np.uint8))
    spec = get_dataset_spec("cityscapes", str(tmp_path / "cityscapes"))
    zeros = np.zeros((24, 32), np.uint8)
    path = _write(tmp_path / "ids" / f"{STEM}_leftImg8bit.png", zeros, label_map_text(TRAIN_IDS, 19))
    assert evaluate_predictions(tmp_path / "ids", spec, "val", progress=False).scores["mean_iou"] == 1.0
    with pytest.raises(KsegError, match=r"written as train-ids .* --label-format label-ids"):
        evaluate_predictions(tmp_path / "ids", spec, "val", label_format="label-ids", progress=False)
    _write(path, zeros, label_map_text(TRAIN_IDS, 6))  # another model's classes
    with pytest.raises(KsegError, match="a model with 6 classes, but cityscapes has 19"):
        evaluate_predictions(tmp_path / "ids", spec, "val", progress=False)


def test_an_unknown_declaration_is_quoted_short(tmp_path):
    from kseg.data import get_dataset_spec

    _cityscapes(tmp_path / "cityscapes", np.full((24, 32), ROAD_LABEL_ID, np.uint8))
    spec = get_dataset_spec("cityscapes", str(tmp_path / "cityscapes"))
    _write(tmp_path / "p" / f"{STEM}_leftImg8bit.png", np.zeros((24, 32), np.uint8), {"kseg:labels": "x" * 5000})
    with pytest.raises(KsegError, match="not a label format kseg knows") as caught:
        evaluate_predictions(tmp_path / "p", spec, "val", progress=False)
    assert len(str(caught.value)) < 300


def test_cityscapes_label_ids_against_another_dataset_are_refused(tmp_path):
    from kseg.data import get_dataset_spec

    root = tmp_path / "data"
    write_png(root / "images" / "a.png", np.zeros((24, 32, 3), np.uint8))
    write_png(root / "masks" / "a.png", np.zeros((24, 32), np.uint8))
    (root / "classes.yaml").write_text("classes: [x, y]\n")
    spec = get_dataset_spec("folder", str(root))
    _write(tmp_path / "p" / "a.png", np.full((24, 32), 7, np.uint8), label_map_text(CITYSCAPES_IDS, 19))
    with pytest.raises(KsegError, match="Cityscapes label ids .* --data cityscapes"):
        evaluate_predictions(tmp_path / "p", spec, "all", progress=False)
