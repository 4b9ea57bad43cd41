"""MediaPipe's ImageSegmenter runs kseg's default TFLite export and agrees with kseg.

The real `mediapipe` package (mediapipe.tasks.python.vision) loads the file, reads the class
names from its metadata and segments an image; its category mask is compared with the
arg-max of the Keras model's logits.
"""

import numpy as np
import pytest
from conftest import randomize_weights
from mediapipe.tasks.python import vision  # a test dependency (setup.py): never skipped

from kseg.exporting import ExportTarget, export_model, sample_images

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

SIZE = (96, 128)
NAMES = ["sky", "road", "car", "tree"]
CLASSES = {"dataset": "toy", "class_names": NAMES,
           "palette": [[70, 130, 180], [128, 64, 128], [0, 0, 142], [107, 142, 35]]}


@pytest.fixture(scope="module")
def model():
    from kseg.models import create_model

    return randomize_weights(create_model("fcn8s", num_classes=4, weights=None, width=0.0625), seed=5)


@pytest.fixture(scope="module")
def image():
    return sample_images(1, sizes=(SIZE,), seed=11)[0]


def kseg_classes(model, image):
    from kseg.inference import predict_logits

    return predict_logits(model, image).argmax(-1)


def segment(path, image):
    """MediaPipe's category mask (H, W) and the labels it read from the file."""
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_category_mask=True, output_confidence_masks=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        labels = list(segmenter.labels)
        mask = result.category_mask.numpy_view().reshape(image.shape[:2]).copy()
        confidences = [np.asarray(m.numpy_view()).reshape(image.shape[:2]).copy()
                       for m in result.confidence_masks]
    return mask, labels, confidences


def test_mediapipe_segments_the_float_export_as_kseg_does(model, image, tmp_path):
    expected = kseg_classes(model, image)
    # Not a model that predicts one class everywhere: agreement must mean something.
    assert len(np.unique(expected)) >= 3, np.unique(expected, return_counts=True)
    out = export_model(model, tmp_path / "model.tflite", ExportTarget("tflite", input_size=SIZE, classes=CLASSES))
    mask, labels, confidences = segment(out, image)
    assert labels == NAMES
    agreement = float((mask == expected).mean())
    print(f"MediaPipe vs kseg, float32 TFLite: {100 * agreement:.2f}% of pixels agree")
    assert agreement >= 0.99
    # The metadata asks for a softmax: one confidence mask per class, summing to one.
    assert len(confidences) == len(NAMES)
    np.testing.assert_allclose(np.sum(confidences, axis=0), 1, atol=1e-4)


def test_mediapipe_runs_the_int8_export(model, image, tmp_path, capfd):
    """Full-integer int8 agrees less; its figure is printed (pytest -s), checked loosely."""
    calibration = sample_images(16, sizes=(SIZE,), seed=12)
    out = export_model(model, tmp_path / "int8.tflite", ExportTarget("tflite", "int8", SIZE, calibration,
                       classes=CLASSES))
    logged = capfd.readouterr()
    # The converter logs the input type it was told; the input is a uint8 image.
    assert "input_inference_type: UINT8" in logged.out + logged.err
    assert "input_inference_type: FLOAT32" not in logged.out + logged.err
    mask, labels, _ = segment(out, image)
    assert labels == NAMES
    agreement = float((mask == kseg_classes(model, image)).mean())
    with capfd.disabled():
        print(f"\nMediaPipe vs kseg, int8 TFLite: {100 * agreement:.2f}% of pixels agree")
    assert agreement > 0.5
