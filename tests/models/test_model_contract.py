"""The contract every registered model passes (parametrized over `kseg.models.list_models()`,
so a new preset is covered as soon as it is registered):

- any input size in (an odd 75x61 and a multiple of 32), logits of that size out, one
  channel per class, float32, finite;
- float32 logits under mixed_float16 and mixed_bfloat16, close to the float32 model's
  with the same weights;
- a `.keras` save and safe-mode load gives identical outputs;
- the JAX backend gives the same logits from the same weights (one subprocess);
- TFLite and ONNX exports agree with Keras at an odd size (every new model and a
  representative set of the others).

Models are built small (num_classes 3, random weights, narrow where the builder takes a
width). Parts that are slow for big models (ResNet50) are marked slow.
"""

import gc
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kseg.models import create_model, get_model_entry, list_models

PRESETS = list_models()
SIZES = ((75, 61), (64, 64))
NUM_CLASSES = 3
# What runs by default for the mixed-precision and saving checks: the new architectures
# and one of each older family; every other preset runs them marked slow (a full-width
# ResNet50, the many layers of MobileNetV3, or a family already covered).
LIGHT = ("unet", "unet_bn", "segnet", "unet_mobilenetv3large", "deeplabv3plus_mobilenetv3large",
         "fcn8s", "fcn8s_caffe", "lraspp_mobilenetv3small")  # fmt: skip


def small_kwargs(name):
    """Keyword arguments for a small, fast instance of preset `name`."""
    kwargs = dict(num_classes=NUM_CLASSES, weights=None)
    if "width" in get_model_entry(name).options:
        kwargs["width"] = 0.35 if get_model_entry(name).backbone.startswith("mobilenetv3") else 0.0625
    return kwargs


def perturb(model, seed=0):
    """Random but sane values for what builders start at constants: all-zero kernels (FCN
    score layers) and batch-norm statistics and scales. Other weights keep their initial
    values, so deep models stay finite; logits are then far from zero everywhere."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        path, shape = variable.path, tuple(variable.shape)
        if path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith(("moving_mean", "beta")):
            value = rng.normal(0, 0.1, shape)
        elif path.endswith("gamma"):
            value = rng.uniform(0.8, 1.2, shape)
        elif path.endswith("kernel") and not np.any(keras.ops.convert_to_numpy(variable.value)):
            value = rng.normal(0, 0.1, shape)
        else:
            continue
        variable.assign(value.astype("float32"))
    return model


_BUILT = {}


def small_model(name):
    """A perturbed small instance of the preset, kept until another preset is asked for
    (tests run preset by preset; keeping all 33, ResNet50s included, would hold gigabytes)."""
    if name not in _BUILT:
        _BUILT.clear()
        gc.collect()
        _BUILT[name] = perturb(create_model(name, **small_kwargs(name)))
    return _BUILT[name]


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    _BUILT.clear()
    gc.collect()


def images(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (1, *size, 3), dtype=np.uint8)


def light_first(names):
    return [name if name in LIGHT else pytest.param(name, marks=pytest.mark.slow) for name in names]


# -- any size in, same size out ---------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_any_size_in_gives_float32_logits_of_that_size(name):
    model = small_model(name)
    for size in SIZES:
        logits = model(images(size))
        assert tuple(logits.shape) == (1, *size, NUM_CLASSES), (name, size)
        assert logits.dtype == "float32"
        values = keras.ops.convert_to_numpy(logits)
        assert np.isfinite(values).all()
        assert values.std() > 1e-4, name  # not a constant map


# -- mixed precision ---------------------------------------------------------------------


def test_presets_take_the_small_settings():
    assert set(LIGHT) <= set(PRESETS)
    assert small_kwargs("unet")["width"] == 0.0625
    assert small_kwargs("deeplabv3plus_mobilenetv3large")["width"] == 0.35
    assert "width" not in small_kwargs("deeplabv3plus_resnet50")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", light_first(PRESETS))
def test_logits_are_float32_and_close_under_mixed_precision(name, policy):
    reference = small_model(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = create_model(name, **small_kwargs(name))
        half = policy.removeprefix("mixed_")
        assert any(layer.compute_dtype == half for layer in model.layers), name
        model.set_weights(reference.get_weights())
        logits = model(images((75, 61), seed=1))
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name
    assert logits.dtype == "float32" and tuple(logits.shape) == (1, 75, 61, NUM_CLASSES)
    expected = keras.ops.convert_to_numpy(reference(images((75, 61), seed=1)))
    actual = keras.ops.convert_to_numpy(logits)
    assert np.isfinite(actual).all()
    # a half-precision model with the same weights: close to float32, relative to its range
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).mean() < 0.05 * scale, (name, policy)


# -- saving ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", light_first(PRESETS))
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    from kseg.models.saving import check_segmentation_model, load_model

    model = small_model(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = load_model(path)  # keras' safe mode: no code runs from the file
    assert check_segmentation_model(loaded, str(path)) == NUM_CLASSES
    for size in SIZES:
        np.testing.assert_array_equal(model(images(size, 2)), loaded(images(size, 2)))


# -- JAX ---------------------------------------------------------------------------------

JAX_SCRIPT = """
import json
import sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from kseg.models import create_model
directory = sys.argv[1]
for name, kwargs in json.loads(sys.argv[2]).items():
    model = create_model(name, **kwargs)
    model.load_weights(f"{directory}/{name}.weights.h5")
    for size in ("75x61", "64x64"):
        batch = np.load(f"{directory}/images_{size}.npy")
        np.save(f"{directory}/{name}_{size}.npy", np.asarray(model.predict(batch, verbose=0)))
"""


def check_under_jax(names, directory):
    """The logits of `names` under JAX equal TensorFlow's, from the same weights files."""
    import json

    pytest.importorskip("jax")
    for size in SIZES:
        np.save(directory / f"images_{size[0]}x{size[1]}.npy", images(size, 3))
    expected = {}
    for name in names:  # one model at a time: its weights file and its TensorFlow logits
        model = small_model(name)
        model.save_weights(directory / f"{name}.weights.h5")
        expected[name] = {size: keras.ops.convert_to_numpy(model(images(size, 3))) for size in SIZES}
    arguments = json.dumps({name: small_kwargs(name) for name in names})
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(directory), arguments],
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name in names:
        for size in SIZES:
            want = expected[name][size]
            actual = np.load(directory / f"{name}_{size[0]}x{size[1]}.npy")
            assert actual.shape == want.shape == (1, *size, NUM_CLASSES), name
            scale = np.abs(want).max()
            np.testing.assert_allclose(actual, want, rtol=1e-3, atol=1e-3 * scale, err_msg=f"{name} {size}")


def test_new_layers_predict_the_same_under_jax(tmp_path):
    """SegNet's unpooling and U-Net's transposed-convolution decoder; the others slow."""
    check_under_jax(("unet_bn", "segnet"), tmp_path)


@pytest.mark.slow
def test_every_model_predicts_the_same_under_jax(tmp_path):
    check_under_jax(PRESETS, tmp_path)


# -- export parity -------------------------------------------------------------------------

# Every model that is not built from the FCN / LR-ASPP / DeepLab v3 builders tested
# elsewhere, and one of each of those.
# The ResNet50 presets are left out: each conversion of a full ResNet50 keeps hundreds of
# megabytes in TensorFlow's converter for the rest of the process, and their dilated
# stages are checked by the backbone export tests (tests/models/test_backbones.py).
EXPORTED = (
    "unet", "unet_bn", "segnet", "unet_mobilenetv3large", "deeplabv3plus_mobilenetv3large",
    "fcn8s", "fcn8s_caffe", "fcn8s_vgg16bn", "fcn8s_mobilenetv3small", "lraspp_mobilenetv3large",
)  # fmt: skip


def test_exported_presets_are_registered():
    assert set(EXPORTED) <= set(PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["tflite", "onnx"])
@pytest.mark.parametrize("name", EXPORTED)
def test_exports_agree_with_keras_at_an_odd_size(name, export_format, tmp_path):
    from kseg.exporting import ExportedModel, ExportTarget, check_export, export_model, sample_images

    model = small_model(name)
    # any size: the TFLite file without MediaPipe's fixed input
    options = {"mediapipe": False} if export_format == "tflite" else {}
    out = export_model(model, tmp_path / f"model.{export_format}", ExportTarget(export_format, **options))
    exported = ExportedModel(out, export_format)
    assert exported.input_size is None
    parity = check_export(model, exported, sample_images(1, sizes=((75, 61),), seed=1))
    assert parity.max_logit > 0.05, parity
    assert parity.pixel_agreement >= 0.999, parity
    assert parity.max_logit_diff < 1e-3 * max(1.0, parity.max_logit), parity


# -- documentation ---------------------------------------------------------------------------


def documented_counts():
    """{preset: parameter count} from the tables of docs/models.md (21 classes)."""
    import re

    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "models.md")
    with open(path, encoding="utf-8") as handle:
        rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d,]+) \|$", handle.read(), flags=re.MULTILINE)
    return {name: int(count.replace(",", "")) for name, count in rows}


NEW_PRESETS = ("unet", "unet_bn", "segnet", "unet_resnet50", "unet_mobilenetv3large", "deeplabv3plus_resnet50",
               "deeplabv3plus_resnet50_os8", "deeplabv3plus_mobilenetv3large")  # fmt: skip


def test_new_presets_are_documented_with_their_parameter_count():
    from kseg.models import parameter_count

    counts = documented_counts()
    assert set(NEW_PRESETS) <= set(counts)
    for name in NEW_PRESETS:
        assert counts[name] == parameter_count(name, 21), name


@pytest.mark.slow
def test_every_documented_parameter_count_is_the_models():
    from kseg.models import parameter_count

    counts = documented_counts()
    assert len(counts) > len(NEW_PRESETS)
    for name, count in counts.items():
        assert count == parameter_count(name, 21), name
