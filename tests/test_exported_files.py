"""`kseg evaluate` and `kseg predict` on exported files (kseg/exported.py): a SavedModel
folder, a float and an int8 TFLite file of any input size, an ONNX file, and a
MediaPipe-ready TFLite file (fixed 48x64 input, one output), all exported from one tiny
randomized model that is also scored as a .keras file."""

import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import randomize_weights
from kseg.cli.main import cli

from kseg.errors import KsegError
from kseg.exported import ExportedPredictor, choose_model, export_format
from kseg.images import read_image, read_mask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                        "ignore::DeprecationWarning")  # fmt: skip

FIXED = (48, 64)
FLOAT_EXPORTS = ("savedmodel", "tflite", "onnx")
NAMES = {"savedmodel": "best_savedmodel", "tflite": "best.tflite", "onnx": "best.onnx",
         "int8": "best_int8.tflite", "fixed": "best_48x64.tflite"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=2,
                                   num_val=3, size=(32, 40), seed=1)  # fmt: skip


@pytest.fixture(scope="module")
def spec(data):
    from kseg.data import get_dataset_spec

    return get_dataset_spec("synthetic", data)


@pytest.fixture(scope="module")
def run(tmp_path_factory, spec):
    """A run directory (best.keras, classes.json) whose export/ folder holds every export.

    Returns:
        tuple. (run directory, {export name: path}, the Keras model).
    """
    from kseg.exporting import ExportTarget, export_model, sample_images
    from kseg.models import create_model
    from kseg.runs import write_classes

    model = randomize_weights(create_model("fcn8s", num_classes=spec.num_classes, weights=None,
                                           width=0.0625), seed=3)  # fmt: skip
    folder = tmp_path_factory.mktemp("runs") / "run"
    (folder / "checkpoints").mkdir(parents=True)
    model.save(folder / "checkpoints" / "best.keras")
    write_classes(str(folder), spec.name, spec.class_names, spec.palette)
    exports = {name: str(folder / "export" / file) for name, file in NAMES.items()}
    any_size = {"mediapipe": False}  # a TFLite file of any input size, not MediaPipe's fixed one
    for name in FLOAT_EXPORTS:
        export_model(model, exports[name], ExportTarget(name, **(any_size if name == "tflite" else {})))
    export_model(model, exports["int8"], ExportTarget("tflite", quantize="int8",
                 calibration=sample_images(4, sizes=((32, 40), (45, 70)), seed=2), **any_size))
    export_model(model, exports["fixed"], ExportTarget("tflite", input_size=FIXED))
    return folder, exports, model


def invoke(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def one_error(result):
    """The single `error:` line of a failed command (and no traceback)."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def table(text):
    """{row label: [numbers]} of the metrics table `kseg evaluate` prints."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][A-Za-z ]*?)\s{2,}([-\d.,na ]+)$", line.strip())
        if match:
            rows[match.group(1)] = [float(value.replace(",", "")) for value in match.group(2).split()]
    return rows


def evaluate_table(model, data):
    result = invoke("evaluate", model, "--data", "synthetic", "--data-dir", data, "--split", "val")
    assert result.exit_code == 0, result.output
    return table(result.stdout), result


# -- recognising exports ---------------------------------------------------------------


def test_the_format_comes_from_the_path(tmp_path):
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "plain").mkdir()
    assert export_format(tmp_path / "saved") == "savedmodel"
    assert export_format(tmp_path / "plain") is None
    assert export_format("model.TFLite") == "tflite"
    assert export_format("model.onnx") == "onnx"
    assert export_format("model.keras") is None and export_format(None) is None


def test_a_path_that_is_no_model_is_refused_naming_it(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights")
    (tmp_path / "folder").mkdir()
    with pytest.raises(KsegError, match=r"model\.bin: not a model kseg can run.*\.tflite"):
        choose_model(str(tmp_path / "model.bin"))
    with pytest.raises(KsegError, match=r"neither a run directory \(no checkpoints/best\.keras or last\.keras\) "
                                        "nor a SavedModel folder"):  # either checkpoint makes a run
        choose_model(str(tmp_path / "folder"))
    with pytest.raises(KsegError, match=r"missing\.onnx: no such ONNX file"):
        choose_model(str(tmp_path / "missing.onnx"))


@pytest.mark.parametrize("name, content", [
    ("broken.tflite", b"not a flatbuffer at all" * 10),
    ("broken.onnx", b"\x08\x07garbage protobuf" * 10),
    ("broken_savedmodel/saved_model.pb", b"\x00\x01garbage"),
])  # fmt: skip
def test_a_damaged_export_is_one_error_line(tmp_path, data, name, content):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    model = path.parent if name.endswith(".pb") else path
    line = one_error(invoke("evaluate", model, "--data", "synthetic", "--data-dir", data))
    assert str(model) in line and "cannot be read as a" in line
    line = one_error(invoke("predict", data, "--model", model, "--out", tmp_path / "out"))
    assert str(model) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("name, what", [("pipe.tflite", "TFLite file"), ("pipe.onnx", "ONNX file")])
def test_a_named_pipe_is_refused_not_waited_on(tmp_path, name, what):
    os.mkfifo(tmp_path / name)  # opening it for reading would wait for a writer forever
    with pytest.raises(KsegError, match=rf"{re.escape(name)}: not a regular file; a {what} must be one"):
        ExportedPredictor(tmp_path / name)
    with pytest.raises(KsegError, match="not a regular file"):
        ExportedPredictor(tmp_path, "tflite")  # a folder given as a TFLite file


def test_an_unknown_file_is_one_error_line(tmp_path, data):
    (tmp_path / "model.pt").write_bytes(b"torch")
    line = one_error(invoke("evaluate", tmp_path / "model.pt", "--data", "synthetic", "--data-dir", data))
    assert "model.pt: not a model kseg can run" in line


# -- evaluate ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLOAT_EXPORTS)
def test_evaluate_prints_the_keras_models_table_for_a_float_export(run, data, name):
    folder, exports, _ = run
    expected, _ = evaluate_table(folder / "checkpoints" / "best.keras", data)
    keras_metrics = (folder / "metrics-val.json").read_bytes()  # the run's default output
    found, result = evaluate_table(exports[name], data)
    assert set(found) == set(expected) and "mean IoU" in found and "background" in found
    for row, values in expected.items():
        np.testing.assert_allclose(found[row], values, atol=0.02, err_msg=row)  # table rounding
    assert exports[name] in result.stderr  # "model: <path> (<kind>, ...)"
    # a run's metrics file is its .keras model's: an export's metrics only go to --out
    assert (folder / "metrics-val.json").read_bytes() == keras_metrics
    assert "metrics:" not in result.stdout


def test_evaluate_scores_an_int8_file_with_the_same_table(run, data, tmp_path):
    folder, exports, _ = run
    expected, _ = evaluate_table(folder / "checkpoints" / "best.keras", data)
    found, result = evaluate_table(exports["int8"], data)
    assert list(found) == list(expected)
    for name in ("background", "circle", "cross"):  # the same ground-truth pixels
        assert found[name][-1] == expected[name][-1]
    assert 0 <= found["mean IoU"][0] <= 100
    assert "TFLite file, 6 classes, any input size" in result.stderr
    out = tmp_path / "metrics.json"
    result = invoke("evaluate", exports["int8"], "--data", "synthetic", "--data-dir", data,
                    "--out", out)
    assert result.exit_code == 0, result.output
    import json

    written = json.loads(out.read_text())
    assert written["source"] == exports["int8"] and written["num_images"] == 3
    assert os.path.isfile(tmp_path / "metrics-confusion.png")


def test_evaluate_takes_an_exported_predictor_and_equals_the_keras_confusion(run, spec):
    from kseg.evaluation import EvaluateOptions, evaluate_model

    folder, exports, model = run
    reference = evaluate_model(model, spec, "val", progress=False).confusion
    for name in FLOAT_EXPORTS:
        confusion = evaluate_model(ExportedPredictor(exports[name]), spec, "val", EvaluateOptions(batch_size=2),
                                   progress=False).confusion  # fmt: skip
        assert np.abs(confusion - reference).sum() <= 0.002 * reference.sum(), name


def test_evaluate_resizes_through_a_fixed_size_file(run, spec):
    """Synthetic images are 32x40; the file takes 48x64: its logits are resized back."""
    from kseg.evaluation import evaluate_model
    from kseg.inference import predict_logits, resize

    _, exports, model = run
    fixed = ExportedPredictor(exports["fixed"])
    assert fixed.input_size == FIXED and "fixed input 48x64" in fixed.describe()
    result = evaluate_model(exports["fixed"], spec, "val", progress=False)
    expected = 0
    from kseg.metrics import confusion_matrix

    for image_path, mask_path in spec.pairs("val"):
        image, mask = spec.read_pair(image_path, mask_path)
        logits = resize(predict_logits(model, resize(image, FIXED)), image.shape[:2])
        expected = expected + confusion_matrix(mask, logits.argmax(-1), spec.num_classes)
    assert np.abs(result.confusion - expected).sum() <= 0.002 * expected.sum()


def test_tiling_a_fixed_size_file_pads_small_images_and_tiles_large_ones(run, spec):
    """fit="tile": a 32x40 image is padded by reflection to 48x64 and the logits cropped;
    a larger image goes in tiles of 48x64."""
    import cv2

    from kseg.inference import predict_logits

    _, exports, model = run
    tiled = ExportedPredictor(exports["fixed"], fit="tile")
    assert "tiled at it" in tiled.describe()
    image = spec.read_pair(*spec.pairs("val")[0])[0]
    padded = cv2.copyMakeBorder(image, 0, 16, 0, 24, cv2.BORDER_REFLECT_101)
    expected = predict_logits(model, padded)[:32, :40]
    np.testing.assert_allclose(tiled.logits(image), expected, atol=1e-3 * np.abs(expected).max())
    large = np.random.default_rng(5).integers(0, 256, (70, 150, 3), dtype=np.uint8)
    logits = tiled.predict_on_batch(large[None])
    assert logits.shape == (1, 70, 150, 6) and np.isfinite(logits).all()
    tiny = large[:1, :3]  # one pixel high: its row is repeated, and its width still reflected
    padded = np.tile(tiny[:, [0, 1, 2, 1]], (48, 16, 1))
    expected = predict_logits(model, padded)[:1, :3]
    np.testing.assert_allclose(tiled.logits(tiny), expected, atol=1e-3 * np.abs(expected).max())


def test_names_inside_an_export_come_first_unless_they_only_number_the_classes():
    from types import SimpleNamespace

    from kseg.exported import embedded_classes

    named = {"class_names": ["sky", "road"], "palette": [[0, 0, 255], [128, 64, 128]], "ignore_index": 255}
    assert embedded_classes(SimpleNamespace(metadata=named)) == named
    numbered = {"class_names": ["class 0", "class 1"], "palette": None}
    assert embedded_classes(SimpleNamespace(metadata=numbered)) is None
    assert embedded_classes(SimpleNamespace(metadata=None)) is None


def test_evaluate_refuses_an_export_with_another_class_count(run, tmp_path, data):
    """A 6-class export scored against a class list of three."""
    _, exports, _ = run
    classes = tmp_path / "three.yaml"
    classes.write_text("classes:\n  - {name: a, color: [0, 0, 0]}\n  - {name: b, color: [1, 1, 1]}\n"
                       "  - {name: c, color: [2, 2, 2]}\n")  # fmt: skip
    result = invoke("evaluate", exports["tflite"], "--data", "synthetic", "--data-dir", data,
                    "--classes", classes)
    line = one_error(result)
    assert exports["tflite"] in line and "predicts 6 classes but synthetic has 3" in line


def test_a_classes_file_of_another_count_beside_an_export_is_refused(run, tmp_path, spec):
    from kseg.prediction import load_exported_predictor

    _, exports, _ = run
    copy = tmp_path / "model.tflite"
    shutil.copy(exports["tflite"], copy)
    (tmp_path / "classes.json").write_text('{"class_names": ["a", "b"]}')
    with pytest.raises(KsegError, match="lists 2 classes but .*model.tflite predicts 6"):
        load_exported_predictor(str(copy))


def test_bf16_is_refused_for_an_export(run, data):
    _, exports, _ = run
    result = invoke("evaluate", exports["onnx"], "--data", "synthetic", "--data-dir", data,
                    "--precision", "bf16")
    assert "--precision bf16 applies to Keras models" in one_error(result)


# -- predict -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from kseg.images import write_png

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(4)
    for name, size in (("odd", (37, 53)), ("wide", (40, 90)), ("small", (20, 24))):
        write_png(str(folder / f"{name}.png"), rng.integers(0, 256, size + (3,), dtype=np.uint8))
    return folder


def predict(model, images, out):
    result = invoke("predict", images, "--model", model, "--out", out)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("name", FLOAT_EXPORTS)
def test_predict_with_an_export_writes_the_keras_label_maps(run, images, tmp_path, name):
    folder, exports, _ = run
    predict(folder, images, tmp_path / "keras")
    result = predict(exports[name], images, tmp_path / name)
    assert "warning" not in result.stderr  # names and colours from the run's classes.json
    agree = total = 0
    for stem in ("odd", "wide", "small"):
        expected, found = read_mask(tmp_path / "keras" / f"{stem}.png"), read_mask(tmp_path / name / f"{stem}.png")
        assert found.shape == expected.shape
        agree, total = agree + int((found == expected).sum()), total + found.size
        np.testing.assert_array_equal(read_image(tmp_path / name / f"{stem}_color.png"),
                                      np.asarray(run_palette(folder), np.uint8)[found])
    assert agree >= 0.999 * total, agree / total
    assert os.path.isfile(tmp_path / name / "legend.png")


def run_palette(folder):
    import json

    return json.loads((folder / "classes.json").read_text())["palette"]


def test_predict_with_a_lone_int8_file_names_classes_by_number(run, images, tmp_path):
    _, exports, _ = run
    lone = tmp_path / "lone" / "model.tflite"
    lone.parent.mkdir()
    shutil.copy(exports["int8"], lone)
    result = predict(lone, images, tmp_path / "out")
    assert "no class names inside it and no classes.json beside it" in result.stderr
    labels = read_mask(tmp_path / "out" / "odd.png")
    assert labels.shape == (37, 53) and labels.max() < 6


def test_predict_with_a_fixed_size_file_resizes_and_tiles(run, images, tmp_path):
    from kseg.inference import predict_logits, resize

    _, exports, model = run
    predict(exports["fixed"], images, tmp_path / "whole")
    for stem in ("odd", "wide", "small"):
        image = read_image(images / f"{stem}.png")
        expected = resize(predict_logits(model, resize(image, FIXED)), image.shape[:2]).argmax(-1)
        found = read_mask(tmp_path / "whole" / f"{stem}.png")
        assert found.shape == image.shape[:2]
        assert (found == expected).mean() >= 0.999, stem
    # tiles of the file's size: a 40x90 image goes in two tiles, each resized to 48x64
    result = invoke("predict", images / "wide.png", "--model", exports["fixed"], "--out",
                    tmp_path / "tiled", "--tile", "48x64", "--overlap", "16")
    assert result.exit_code == 0, result.output
    assert read_mask(tmp_path / "tiled" / "wide.png").shape == (40, 90)


def test_names_inside_an_export_name_its_classes_without_a_classes_json(run, tmp_path):
    from kseg.exporting import ExportTarget, export_model
    from kseg.prediction import load_exported_predictor

    _, _, model = run
    classes = {"class_names": [f"kind {index}" for index in range(6)],
               "palette": [[index * 40, 0, 255 - index * 40] for index in range(6)]}  # fmt: skip
    out = export_model(model, tmp_path / "lone" / "saved", ExportTarget("savedmodel", classes=classes))
    predictor = load_exported_predictor(out)
    assert predictor.class_names == classes["class_names"] and not predictor.warnings
    np.testing.assert_array_equal(predictor.palette, classes["palette"])
