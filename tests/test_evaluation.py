import json
import math
import os

import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.evaluation import (
    EvaluateOptions,
    evaluate_model,
    evaluate_predictions,
    write_reports,
)
from kseg.images import write_png
from kseg.metrics import confusion_matrix


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=2, num_val=3, size=(32, 40), seed=1
    )


@pytest.fixture(scope="module")
def spec(tiny_data):
    from kseg.data import get_dataset_spec

    return get_dataset_spec("synthetic", tiny_data)


def ground_truth(spec, split="val"):
    return [(image, spec.read_pair(image, mask)[1]) for image, mask in spec.pairs(split)]


def test_model_confusion_equals_direct_count(spec):
    from kseg.models import create_model

    model = create_model("fcn32s", num_classes=spec.num_classes, weights=None, width=0.0625)
    # Non-zero scores so predictions are not all class 0.
    score = model.get_layer("score_fr")
    kernel, bias = score.get_weights()
    score.set_weights([np.random.default_rng(0).normal(size=kernel.shape).astype("float32"), bias])
    result = evaluate_model(model, spec, "val", EvaluateOptions(batch_size=2), progress=False)
    expected = np.zeros_like(result.confusion)
    for image_path, mask_path in spec.pairs("val"):
        image, mask = spec.read_pair(image_path, mask_path)
        prediction = model.predict(image[None], verbose=0)[0].argmax(-1)
        expected += confusion_matrix(mask, prediction, spec.num_classes)
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.num_images == 3


def test_a_model_trained_under_a_mixed_policy_is_scored_in_the_precision_asked_for(spec):
    """Training under --mixed-precision leaves bfloat16 compute in the layers' policies;
    evaluate computes in fp32 unless asked for bf16, as predict does."""
    import keras

    from kseg.models import create_model

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = create_model("fcn8s_vgg16bn", num_classes=spec.num_classes, weights=None, width=0.0625)
    finally:
        keras.config.set_dtype_policy("float32")
    randomize_weights(mixed, seed=5)
    reference = create_model("fcn8s_vgg16bn", num_classes=spec.num_classes, weights=None, width=0.0625)
    reference.set_weights(mixed.get_weights())

    def confusion_of(model):
        confusion = 0
        for image, mask in (spec.read_pair(*pair) for pair in spec.pairs("val")):
            prediction = np.asarray(model.predict_on_batch(image[None]))[0].argmax(-1)
            confusion = confusion + confusion_matrix(mask, prediction, spec.num_classes)
        return confusion

    in_float32, in_bfloat16 = confusion_of(reference), confusion_of(mixed)
    assert (in_float32 != in_bfloat16).any()  # the two precisions give different scores here
    result = evaluate_model(mixed, spec, "val", progress=False)
    np.testing.assert_array_equal(result.confusion, in_float32)
    assert result.precision == "fp32" and result.to_dict()["precision"] == "fp32"
    assert evaluate_model(mixed, spec, "val", EvaluateOptions(precision="bf16"), progress=False).precision == "bf16"


def test_model_with_other_class_count_is_refused(spec):
    from kseg.models import create_model

    model = create_model("fcn32s", num_classes=3, weights=None, width=0.0625)
    with pytest.raises(KsegError, match="predicts 3 classes"):
        evaluate_model(model, spec, "val", progress=False)


def test_nonfinite_logits_are_an_error_not_a_score(spec):
    import keras

    model = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Conv2D(spec.num_classes, 1, name="score")])
    kernel = np.full((1, 1, 3, spec.num_classes), 1e37, np.float32)  # overflows on any pixel
    model.get_layer("score").set_weights([kernel, np.zeros(spec.num_classes, np.float32)])
    with pytest.raises(KsegError, match="NaN or inf.*no metrics computed"):
        evaluate_model(model, spec, "val", progress=False)


def test_prediction_files_scored_by_stem(spec, tmp_path):
    truth = ground_truth(spec)
    expected = np.zeros((spec.num_classes, spec.num_classes + 1), np.int64)
    for index, (image_path, mask) in enumerate(truth):
        prediction = mask.copy()
        prediction[: 4 + index] = (prediction[: 4 + index] + 1) % spec.num_classes
        prediction[-1, :3] = 255  # "no class": an error for the true class
        stem = os.path.splitext(os.path.basename(image_path))[0]
        write_png(tmp_path / "nested" / f"{stem}.png", prediction.astype(np.uint8))
        expected += confusion_matrix(mask, prediction, spec.num_classes)
    result = evaluate_predictions(tmp_path, spec, "val", progress=False)
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.confusion[:, -1].sum() > 0

    out = tmp_path / "metrics.json"
    write_reports(result, out, tmp_path / "confusion.png")
    payload = json.loads(out.read_text())
    assert payload["mean_iou"] == pytest.approx(result.scores["mean_iou"])
    assert [row["name"] for row in payload["classes"]] == list(spec.class_names)
    assert "left out of the means" in payload["note"]
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_perfect_predictions_and_absent_classes(spec, tmp_path):
    for image_path, mask in ground_truth(spec):
        stem = os.path.splitext(os.path.basename(image_path))[0]
        write_png(tmp_path / f"{stem}.png", mask)
    result = evaluate_predictions(tmp_path, spec, "val", progress=False)
    scores = result.scores
    assert scores["pixel_accuracy"] == 1.0 and scores["mean_iou"] == 1.0
    for index in scores["absent_classes"]:
        assert math.isnan(scores["class_iou"][index])
    if scores["absent_classes"]:
        assert any("NaN" in line for line in result.report_lines())


def test_missing_and_misshapen_predictions(spec, tmp_path):
    truth = ground_truth(spec)
    stem = os.path.splitext(os.path.basename(truth[0][0]))[0]
    write_png(tmp_path / f"{stem}.png", truth[0][1])
    with pytest.raises(KsegError, match="no prediction for 2 of 3"):
        evaluate_predictions(tmp_path, spec, "val", progress=False)
    for image_path, mask in truth[1:]:
        other = os.path.splitext(os.path.basename(image_path))[0]
        write_png(tmp_path / f"{other}.png", mask[:-1])
    with pytest.raises(KsegError, match="prediction is 40x31"):
        evaluate_predictions(tmp_path, spec, "val", progress=False)


# -- Cityscapes: kseg's mean IoU equals the official script's -----------------------------


@pytest.fixture
def fake_cityscapes(tmp_path):
    """Two 'val' images with random label ids (void ones included) and predictions."""
    from cityscapesscripts.helpers.labels import labels

    ids = np.array([label.id for label in labels if label.id >= 0])
    rng = np.random.default_rng(3)
    root, predictions = tmp_path / "cityscapes", tmp_path / "predictions"
    gt_files, prediction_files = [], []
    for index, city in enumerate(["aachen", "bochum"]):
        stem = f"{city}_000000_00001{index}"
        truth = rng.choice(ids, size=(24, 36)).astype(np.uint8)
        truth[:, :5] = 7  # plenty of road
        noise = rng.choice(ids, size=truth.shape)
        guess = np.where(rng.random(truth.shape) < 0.6, truth, noise).astype(np.uint8)
        image_path = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
        write_png(image_path, np.zeros((24, 36, 3), np.uint8))
        gt_path = root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
        write_png(gt_path, truth)
        prediction_path = predictions / f"{stem}_leftImg8bit.png"
        write_png(prediction_path, guess)
        gt_files.append(str(gt_path))
        prediction_files.append(str(prediction_path))
    return root, predictions, gt_files, prediction_files


def official_class_ious(prediction_files, gt_files):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
    from cityscapesscripts.helpers.labels import id2label

    args = official.args
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.quiet = True
    matrix = official.generateMatrix(args)
    for prediction, truth in zip(prediction_files, gt_files):
        official.evaluatePair(prediction, truth, matrix, {}, {}, args)
    scores = {
        id2label[label].name: official.getIouScoreForLabel(label, matrix, args) for label in args.evalLabels
    }
    return scores, official.getScoreAverage(scores, args)


def test_cityscapes_label_ids_match_official_script(fake_cityscapes):
    from kseg.data import get_dataset_spec

    root, predictions, gt_files, prediction_files = fake_cityscapes
    spec = get_dataset_spec("cityscapes", str(root))
    result = evaluate_predictions(predictions, spec, "val", progress=False)
    official_scores, official_mean = official_class_ious(prediction_files, gt_files)
    scores = result.scores
    assert scores["mean_iou"] == pytest.approx(official_mean, abs=1e-12)
    for name, iou in zip(spec.class_names, scores["class_iou"]):
        if math.isnan(official_scores[name]):
            assert math.isnan(iou)
        else:
            assert iou == pytest.approx(official_scores[name], abs=1e-12), name
    # The same maps written as train ids score the same.
    from kseg.data.cityscapes import label_id_to_train_id_table

    table = label_id_to_train_id_table()
    as_train_ids = predictions.parent / "train_ids"
    for path in prediction_files:
        from kseg.data.readers import read_index_mask

        write_png(as_train_ids / os.path.basename(path), table[read_index_mask(path)])
    again = evaluate_predictions(as_train_ids, spec, "val", label_format="train-ids", progress=False)
    np.testing.assert_array_equal(again.confusion, result.confusion)


def test_label_ids_only_for_cityscapes(spec, tmp_path):
    with pytest.raises(KsegError, match="Cityscapes only"):
        evaluate_predictions(tmp_path, spec, "val", label_format="label-ids", progress=False)


def test_contact_sheet_shows_image_truth_and_prediction(spec, tmp_path):
    from kseg.images import read_image
    from kseg.models import create_model

    model = create_model("fcn32s", num_classes=spec.num_classes, weights=None, width=0.0625)
    result = evaluate_model(model, spec, "val", progress=False, examples=2)
    assert len(result.examples) == 2
    image, truth, prediction = result.examples[0]
    first_image, first_mask = spec.read_pair(*spec.pairs("val")[0])
    np.testing.assert_array_equal(image, first_image)
    np.testing.assert_array_equal(truth, first_mask)
    assert prediction.shape == truth.shape
    write_reports(result, sheet_png=tmp_path / "sheet.png")
    sheet = read_image(tmp_path / "sheet.png")
    height, width = first_image.shape[:2]
    assert sheet.shape[1] >= 3 * width and sheet.shape[0] >= 2 * height
    # the ground truth appears in the dataset's colours
    colours = {tuple(c) for c in sheet.reshape(-1, 3)}
    for label in np.unique(first_mask):
        if label != 255:
            assert tuple(int(v) for v in spec.palette[label]) in colours
    assert evaluate_model(model, spec, "val", progress=False).examples == []
    # the examples are spread over the split: its first and its last image
    last_image, _ = spec.read_pair(*spec.pairs("val")[-1])
    assert len(spec.pairs("val")) > 2
    np.testing.assert_array_equal(result.examples[-1][0], last_image)


def split_of_heights(tmp_path, heights):
    """A synthetic dataset whose val images (width 40) have the given heights."""
    import cv2

    from kseg.data import get_dataset_spec
    from kseg.data.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(str(tmp_path / "synthetic"), num_train=1, num_val=len(heights), size=(32, 40),
                                   seed=1)  # fmt: skip
    for index, height in enumerate(heights):
        for kind in ("images", "masks"):
            path = os.path.join(root, kind, "val", f"{index:05d}.png")
            array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            cv2.imwrite(path, cv2.resize(array, (40, height), interpolation=cv2.INTER_NEAREST))
    return get_dataset_spec("synthetic", root)


class ZeroLogits:
    """A model that predicts class 0 everywhere."""

    layers = []

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def predict_on_batch(self, images):
        return np.zeros(images.shape[:3] + (self.num_classes,), np.float32)


def test_max_images_scores_that_many_images_of_several_sizes(tmp_path):
    """Batches hold images of one size only, so N images can take more batches than
    N / batch size: --max-images 3 still scores 3 images."""
    spec = split_of_heights(tmp_path, (32, 36, 40, 44))  # every image a size of its own
    result = evaluate_model(ZeroLogits(spec.num_classes), spec, "val", EvaluateOptions(batch_size=2, max_images=3),
                            progress=False)  # fmt: skip
    assert result.num_images == 3
    assert result.confusion.sum() == sum((spec.read_pair(*pair)[1] != 255).sum() for pair in spec.pairs("val")[:3])


@pytest.mark.parametrize("engine", ["tf.data", "python"])
def test_max_images_scores_the_first_images_of_a_split_of_mixed_sizes(tmp_path, monkeypatch, engine):
    """Batches hold images of one size only: --max-images 2 at batch size 2 over sizes
    A, B, A, B scores images 0 and 1 (as with --predictions), not the first batch's 0 and 2."""
    import kseg.data.pipeline

    monkeypatch.setattr(kseg.data.pipeline, "default_engine", lambda: engine)
    spec = split_of_heights(tmp_path, (32, 36, 32, 36))
    result = evaluate_model(ZeroLogits(spec.num_classes), spec, "val", EvaluateOptions(batch_size=2, max_images=2),
                            progress=False)  # fmt: skip
    folder = tmp_path / "predictions"
    folder.mkdir()
    for image_path, mask in ground_truth(spec):
        write_png(folder / os.path.basename(image_path), np.zeros_like(mask))
    scored = evaluate_predictions(str(folder), spec, "val", max_images=2, progress=False)
    assert result.num_images == scored.num_images == 2
    np.testing.assert_array_equal(result.confusion, scored.confusion)


def test_a_cityscapes_image_without_a_city_sequence_frame_id_matches_no_other_file():
    """An image stem of fewer than three parts has no city_sequence_frame id to match on:
    only its own <stem>.png is its prediction, not a file such as predict's legend.png."""
    from kseg.evaluation import find_prediction

    predictions = {"legend": "out/legend.png", "aachen_000000_000019_leftImg8bit": "out/a.png"}
    assert find_prediction("extra_leftImg8bit", predictions, cityscapes=True) is None
    assert find_prediction("aachen_000000_000019_x", predictions, cityscapes=True) == "out/a.png"


def test_a_run_of_other_classes_is_refused_naming_its_dataset_only_when_known(spec, tmp_path):
    """Every key of classes.json is optional: one without "dataset" gives no "(None)"."""
    from kseg.evaluation import check_run_classes

    (tmp_path / "classes.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    with pytest.raises(KsegError, match=r"trained on 2 classes, but synthetic has") as caught:
        check_run_classes(str(tmp_path), spec)
    assert "None" not in str(caught.value)
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": ["a", "b"], "dataset": "camvid"}))
    with pytest.raises(KsegError, match=r"trained on 2 classes \(camvid\), but synthetic has"):
        check_run_classes(str(tmp_path), spec)


def test_the_confusion_matrix_draws_class_names_with_dollar_signs_as_text(tmp_path):
    """Matplotlib reads text between two "$" as a formula; a class name is no formula."""
    from kseg.evaluation import EvaluationResult, plot_confusion_matrix

    result = EvaluationResult(np.array([[5, 1, 0], [2, 3, 0]]), ["cost $\\frac$", "b$^$"], 1, "folder", "v$al$")
    plot_confusion_matrix(result, tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_several_predictions_for_one_cityscapes_image_are_named_not_called_missing():
    from kseg.evaluation import find_prediction

    predictions = {"aachen_000000_000019_a": "out/a.png", "aachen_000000_000019_b": "out/b.png"}
    with pytest.raises(KsegError, match=r"2 prediction files match its id aachen_000000_000019 \(out/a.png, out/b"):
        find_prediction("aachen_000000_000019_leftImg8bit", predictions, cityscapes=True)


def test_the_confusion_matrix_shows_a_class_name_no_font_can_draw_escaped(tmp_path):
    """classes.yaml may spell a lone surrogate ("\\udcff"), and --split come from a name not in UTF-8."""
    from kseg.evaluation import EvaluationResult, plot_confusion_matrix

    result = EvaluationResult(np.array([[5, 1, 0], [2, 3, 0]]), ["a\udcffb", "c"], 1, "folder", "v\udcffal")
    plot_confusion_matrix(result, tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_max_images_limits_the_prediction_files_scored_too(spec, tiny_data, tmp_path):
    """--max-images N with --predictions scores the split's first N images: only they need a file."""
    import kseg

    truth = ground_truth(spec)[:2]
    for image_path, mask in truth:
        write_png(tmp_path / f"{os.path.splitext(os.path.basename(image_path))[0]}.png", mask)
    options = EvaluateOptions(predictions=str(tmp_path), max_images=2)
    result = kseg.evaluate(data="synthetic", data_dir=tiny_data, options=options)
    assert result.num_images == 2
    assert result.confusion.sum() == sum((mask != 255).sum() for _, mask in truth)


def test_a_default_report_path_is_named_without_an_option_the_user_did_not_give(tmp_path):
    from types import SimpleNamespace

    from kseg.evaluation import _report_outputs

    (tmp_path / "metrics-val.json").write_text('{"my": "notes"}')
    (tmp_path / "m-confusion.png").write_text("my picture")
    chosen = SimpleNamespace(output_dir=str(tmp_path), path=str(tmp_path / "best.keras"), run_dir=None)
    options = SimpleNamespace(out=None, confusion_png=None, classes_file=None, predictions=None, sheet=None)
    spec = SimpleNamespace(root=str(tmp_path / "data"))
    with pytest.raises(KsegError) as error:
        _report_outputs("val", chosen, False, spec, options)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'metrics-val.json'}: ") and "choose a path with --out" in message
    options.out = str(tmp_path / "m.json")  # the confusion matrix goes beside it by default
    with pytest.raises(KsegError, match="^/.*m-confusion.png: .*choose a path with --confusion-png"):
        _report_outputs("val", chosen, False, spec, options)
    options.out = str(tmp_path / "metrics-val.json")  # given: named by its option, as before
    with pytest.raises(KsegError, match="^--out .*metrics-val.json: .*choose another --out"):
        _report_outputs("val", chosen, False, spec, options)
