"""Exports reload and equal the Keras model (kseg/exporting.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.exporting import (
    ExportedModel,
    ExportTarget,
    check_export,
    default_output_path,
    export_model,
    load_images,
    sample_images,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def model():
    """A tiny FCN-8s with every variable drawn from a seeded normal.

    The builders start the score layers at zero; unperturbed, every logit would be 0 and
    any export would "agree".
    """
    from kseg.models import create_model

    return randomize_weights(create_model("fcn8s", num_classes=4, weights=None, width=0.0625))


@pytest.fixture(scope="module")
def images():
    return sample_images(4, sizes=((64, 96), (45, 70)), seed=1)


def keras_logits(model, batch):
    return np.asarray(model(batch))


def test_savedmodel_signature_takes_any_size_and_equals_keras(model, tmp_path):
    import tensorflow as tf

    out = export_model(model, tmp_path / "saved", ExportTarget("savedmodel"))
    loaded = tf.saved_model.load(out)
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    rng = np.random.default_rng(2)
    for shape in [(1, 45, 70, 3), (2, 33, 97, 3), (1, 64, 64, 3)]:
        batch = rng.integers(0, 256, shape, dtype=np.uint8)
        outputs = serve(images=tf.constant(batch))
        expected = keras_logits(model, batch)
        np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=1e-5)
        assert outputs["classes"].dtype == tf.int32
        np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(-1))
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_models_with_a_one_element_output_list_export_and_others_are_refused(model):
    import keras

    from kseg.exporting import serving_model

    listed = keras.Model(model.input, [model.output])
    assert set(serving_model(listed).output) == {"logits", "classes"}
    two = keras.Model(model.input, [model.output, model.output])
    with pytest.raises(KsegError, match="expected one output"):
        serving_model(two)


def test_saved_model_cli_shows_the_signature(model, tmp_path):
    tool = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.isfile(tool):
        pytest.skip("saved_model_cli is not installed beside this Python")
    out = export_model(model, tmp_path / "saved", ExportTarget("savedmodel"))
    shown = subprocess.run(
        [tool, "show", "--dir", out, "--tag_set", "serve", "--signature_def", "serving_default"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "images" in shown and "DT_UINT8" in shown and "(-1, -1, -1, 3)" in shown
    assert "logits" in shown and "classes" in shown and "DT_INT32" in shown


def test_tflite_float_equals_keras_at_any_size(model, images, tmp_path):
    out = export_model(model, tmp_path / "model.tflite", ExportTarget("tflite", mediapipe=False))
    exported = ExportedModel(out, "tflite")
    assert exported.input_size is None
    parity = check_export(model, exported, images)
    assert parity.max_logit_diff < 1e-4 and parity.pixel_agreement > 0.999
    assert parity.max_logit > 0.5  # the comparison is not between zeros


def test_tflite_int8_is_full_integer_and_agrees_on_most_pixels(model, images, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    from kseg.images import write_png

    for index, image in enumerate(sample_images(8, sizes=((64, 96),), seed=7)):
        write_png(calibration / f"{index}.png", image)
    out = export_model(model, tmp_path / "int8.tflite", ExportTarget("tflite", "int8", (64, 96),
                       load_images(str(calibration))))
    exported = ExportedModel(out, "tflite")
    assert exported.input_size == (64, 96)
    interpreter = Interpreter(model_path=out)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    kernels = [t for t in interpreter.get_tensor_details() if "block3_conv1" in t["name"]]
    assert kernels and any(t["dtype"] == np.int8 for t in kernels)
    parity = check_export(model, exported, images)
    assert parity.pixel_agreement > 0.8, parity
    assert os.path.getsize(out) < os.path.getsize(
        export_model(model, tmp_path / "float.tflite", ExportTarget("tflite", input_size=(64, 96)))
    ) / 2


@pytest.mark.parametrize("preprocessing", ["VGGPreprocessing", "CaffeFCNPreprocessing"])
def test_int8_keeps_the_preprocessed_image_within_a_few_quantization_steps(preprocessing, tmp_path):
    """The models' channel flip and mean subtraction survive full-integer quantization.

    With `ops.flip`, TFLite's int8 REVERSE_V2 returned values tens of grey levels off
    whenever another op followed it (here the models' own padding); a model whose
    'logits' are its padded-and-cropped preprocessed image shows it directly.
    """
    import keras

    from kseg.models import caffe_fcn, layers

    layer = getattr(layers, preprocessing, None) or getattr(caffe_fcn, preprocessing)
    images = keras.Input((None, None, 3), name="images")
    x = layers.PadToMultiple(32, name="pad")(layer(name="preprocess")(images))
    model = keras.Model(images, layers.CropToReference(name="logits")([x, images]))
    calibration = sample_images(8, sizes=((32, 48),), seed=3)
    out = export_model(model, tmp_path / "int8.tflite", ExportTarget("tflite", "int8", (32, 48), calibration))
    exported = ExportedModel(out, "tflite")
    for image in sample_images(3, sizes=((32, 48),), seed=4):
        expected = np.asarray(model(image[None].astype("float32")))[0]
        error = np.abs(np.asarray(exported(image)) - expected)
        # one int8 step over this range is about 1 grey level
        assert error.max() < 4, (preprocessing, error.max(), error.mean())


@pytest.mark.parametrize("quantize,agreement", [("fp16", 0.99), ("dynamic", 0.9)])
def test_tflite_weight_quantization_agrees(model, images, tmp_path, quantize, agreement):
    out = export_model(model, tmp_path / f"{quantize}.tflite", ExportTarget("tflite", quantize, mediapipe=False))
    parity = check_export(model, ExportedModel(out, "tflite"), images)
    assert parity.pixel_agreement > agreement, parity


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_model_trained_under_a_mixed_policy_exports_in_float32(policy, images, tmp_path):
    """Training under --mixed-precision leaves 16-bit compute in every layer's policy;
    LiteRT's builtin kernels have no bfloat16 ops, so the export must compute in float32."""
    import keras

    from kseg.models import create_model

    keras.config.set_dtype_policy(policy)
    try:
        mixed = create_model("fcn8s_vgg16bn", num_classes=3, weights=None, width=0.0625)
    finally:
        keras.config.set_dtype_policy("float32")
    randomize_weights(mixed, seed=3)
    assert {layer.dtype_policy.name for layer in mixed.layers} >= {policy}
    reference = create_model("fcn8s_vgg16bn", num_classes=3, weights=None, width=0.0625)
    reference.set_weights(mixed.get_weights())
    out = export_model(mixed, tmp_path / "mixed.tflite", ExportTarget("tflite", mediapipe=False))
    parity = check_export(reference, ExportedModel(out, "tflite"), images)
    assert parity.max_logit_diff < 1e-4 and parity.pixel_agreement > 0.999, parity
    assert parity.max_logit > 0.05  # not a comparison of zeros


def test_onnx_equals_keras_at_any_size(model, images, tmp_path):
    out = export_model(model, tmp_path / "model.onnx", ExportTarget("onnx"))
    exported = ExportedModel(out, "onnx")
    assert exported.input_size is None
    parity = check_export(model, exported, images)
    assert parity.max_logit_diff < 1e-4 and parity.pixel_agreement > 0.999


def test_failed_export_leaves_the_previous_file(model, tmp_path):
    out = tmp_path / "model.tflite"
    out.write_bytes(b"previous")
    with pytest.raises(KsegError, match="calibration"):
        export_model(model, out, ExportTarget("tflite", "int8"))
    assert out.read_bytes() == b"previous"
    with pytest.raises(KsegError, match="TFLite"):
        export_model(model, tmp_path / "x.onnx", ExportTarget("onnx", "int8"))


def test_default_output_paths(tmp_path):
    run = str(tmp_path / "run")
    model = os.path.join(run, "checkpoints", "best.keras")
    export = os.path.join(run, "export")
    assert default_output_path(model, run, "savedmodel") == os.path.join(export, "best_savedmodel")
    assert default_output_path(model, run, "tflite", "int8") == os.path.join(export, "best_int8.tflite")
    assert default_output_path("/m/x.keras", None, "onnx") == "/m/x.onnx"


def test_load_images_reports_empty_folders_and_unknown_sources(tmp_path):
    with pytest.raises(KsegError, match="no images"):
        load_images(str(tmp_path))
    with pytest.raises(KsegError):
        load_images(str(tmp_path / "nowhere"))


def test_calibration_images_from_a_dataset_name(tmp_path):
    synthetic = pytest.importorskip("kseg.data.synthetic")
    root = tmp_path / "synthetic"
    synthetic.write_synthetic_dataset(str(root), num_train=5, num_val=2, size=(40, 56))
    images = load_images("synthetic", str(root), limit=3)
    assert len(images) == 3 and all(image.shape == (40, 56, 3) for image in images)


def test_kseg_exports_are_recognised_and_a_failed_verify_keeps_the_previous(model, tmp_path):
    from kseg.exporting import MARKER, check_destination

    with check_destination(tmp_path / "saved", "savedmodel", str(tmp_path / "m.keras")):
        out = export_model(model, tmp_path / "saved", ExportTarget("savedmodel"))
    assert os.path.isfile(os.path.join(out, MARKER))
    check_destination(out, "savedmodel", str(tmp_path / "m.keras"), force=True)  # accepted
    with pytest.raises(KsegError, match="--force"):
        check_destination(out, "savedmodel", str(tmp_path / "m.keras"))
    with pytest.raises(KsegError, match="not as tflite export"):
        check_destination(out, "tflite", str(tmp_path / "m.keras"), force=True)

    before = sorted(os.listdir(out))

    def failing(temporary):
        assert os.path.basename(temporary).startswith(".")  # complete, under its hidden name
        assert os.path.isfile(os.path.join(temporary, "saved_model.pb")) or os.path.getsize(temporary)
        raise KsegError("check failed")

    with pytest.raises(KsegError, match="check failed"):
        export_model(model, out, ExportTarget("savedmodel"), verify=failing)
    assert sorted(os.listdir(out)) == before
    assert sorted(os.listdir(tmp_path)) == [".kseg-outputs.json", "saved"]  # no temporary left
    deeper = tmp_path / "new" / "deeper" / "m.onnx"
    with pytest.raises(KsegError, match="check failed"), check_destination(deeper, "onnx", "m.keras"):
        export_model(model, deeper, ExportTarget("onnx"), verify=failing)
    assert sorted(os.listdir(tmp_path)) == [".kseg-outputs.json", "saved"]  # its folders are gone too


def test_a_float_export_may_differ_at_a_few_pixels_if_the_classes_agree():
    """SegNet's unpooling moves a value by a pixel where rounding swaps two almost equal
    values of a pooling window: up to 1% of the pixels may be off if the classes agree on
    99.9% of them; a NaN never passes."""
    from kseg.exporting import Parity, parity_problem

    assert parity_problem(Parity(1e-4, 0.5, 2, 1.0), "x.tflite") is None  # all within: near-ties may flip
    assert parity_problem(Parity(0.2, 0.9996, 2, 1.0, off_pixels=0.0052), "x.tflite") is None
    problem = parity_problem(Parity(0.2, 0.9996, 2, 1.0, off_pixels=0.02), "x.tflite")
    assert problem == ("x.tflite: the export differs from the Keras model (max logit difference 0.2, at 2.00% of "
                       "the pixels; classes agree on 99.96%)")
    assert parity_problem(Parity(0.2, 0.998, 2, 1.0, off_pixels=0.005), "x.tflite") is not None
    assert parity_problem(Parity(0.2, 0.998, 2, 1.0, off_pixels=0.5), "x.tflite", quantize="int8") is None
    assert parity_problem(Parity(float("nan"), 1.0, 1, 1.0), "x") is not None


def test_the_check_counts_the_pixels_whose_logits_differ():
    import keras

    from kseg.exporting import check_export
    from kseg.inference import predict_logits

    class Shifted:
        """An 'export' whose logits are the Keras model's, but 5 higher at `count` pixels."""

        input_size, name = None, "shifted.tflite"

        def __init__(self, model, count):
            self.model, self.count = model, count

        def __call__(self, image):
            logits = np.array(predict_logits(self.model, image), np.float32)
            logits.reshape(-1, logits.shape[-1])[: self.count] += 5.0
            return logits

    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 1, bias_initializer="ones")])
    parity = check_export(model, Shifted(model, 3), [np.full((50, 40, 3), 100, np.uint8)] * 2)
    assert parity.off_pixels == 6 / 4000 and parity.max_logit_diff >= 5


@pytest.mark.parametrize("export_format", ["tflite", "onnx"])
def test_a_file_export_onto_a_folder_or_a_savedmodel_onto_a_file_is_refused_in_one_line(
        model, tmp_path, export_format):
    (tmp_path / "folder").mkdir()
    with pytest.raises(KsegError, match=rf"folder: exists and is a folder; the {export_format} export is a file"):
        export_model(model, tmp_path / "folder", ExportTarget(export_format, input_size=(32, 32)))
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(KsegError, match="file: exists and is a file; a SavedModel is a folder"):
        export_model(model, tmp_path / "file", ExportTarget("savedmodel"))
    assert sorted(os.listdir(tmp_path)) == ["file", "folder"] and not os.listdir(tmp_path / "folder")
