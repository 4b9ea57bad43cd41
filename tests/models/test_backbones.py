"""The keras.applications backbones and their heads (kseg/models/backbones.py, heads.py,
backbone_fcn.py, lraspp.py, deeplab.py): any size in, same size out; saving; weights
loaded from files the tests write; the DeepLab output stride; TFLite parity."""

import types

import keras
import numpy as np
import pytest

from kseg.errors import KsegError, WeightsError
from kseg.models import create_model, get_model_entry, list_models, parameter_count
from kseg.models.backbones import BACKBONES, BN_MOMENTUM, Variant, application_kwargs

NEW_PRESETS = (
    "fcn32s_mobilenetv3large", "fcn16s_mobilenetv3large", "fcn8s_mobilenetv3large",
    "fcn32s_mobilenetv3small", "fcn16s_mobilenetv3small", "fcn8s_mobilenetv3small",
    "fcn32s_resnet50", "fcn16s_resnet50", "fcn8s_resnet50",
    "lraspp_mobilenetv3large", "lraspp_mobilenetv3small",
    "deeplabv3_resnet50", "deeplabv3_resnet50_os8",
)  # fmt: skip
OUTPUT_STRIDES = {
    "fcn32s_mobilenetv3large": 32, "fcn16s_mobilenetv3large": 16, "fcn8s_mobilenetv3large": 8,
    "fcn32s_mobilenetv3small": 32, "fcn16s_mobilenetv3small": 16, "fcn8s_mobilenetv3small": 8,
    "fcn32s_resnet50": 32, "fcn16s_resnet50": 16, "fcn8s_resnet50": 8,
    "lraspp_mobilenetv3large": 16, "lraspp_mobilenetv3small": 16,
    "deeplabv3_resnet50": 16, "deeplabv3_resnet50_os8": 8,
}  # fmt: skip
# Narrow MobileNetV3s (the real architecture, fewer channels) keep the tests fast;
# ResNet50 has no width option.
SMALL_WIDTH = 0.35


def small_kwargs(name):
    kwargs = dict(num_classes=3, weights=None)
    if "mobilenet" in name:
        kwargs["width"] = SMALL_WIDTH
    return kwargs


def perturb(model, seed=0):
    """Random but sane values for what the builders start at zero or one: score layers
    (zero-initialised), BatchNorm statistics and scales. Convolutions keep their initial
    (Glorot) values, so a deep ResNet stays finite."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        path, shape = variable.path, tuple(variable.shape)
        if path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith(("moving_mean", "beta")):
            value = rng.normal(0, 0.1, shape)
        elif path.endswith("gamma"):
            value = rng.uniform(0.8, 1.2, shape)
        elif variable.path.split("/")[0].startswith(("score", "classifier", "lraspp_")) and not any(
            np.asarray(variable.value).ravel()[:1]
        ):
            value = rng.normal(0, 0.1, shape)
        else:
            continue
        variable.assign(value.astype("float32"))
    return model


_BUILT = {}


def small_model(name):
    """One perturbed small instance of each preset per test session."""
    if name not in _BUILT:
        _BUILT[name] = perturb(create_model(name, **small_kwargs(name)))
    return _BUILT[name]


def uint8_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# -- shapes and dtypes ------------------------------------------------------------------


MOBILE_PRESETS = tuple(name for name in NEW_PRESETS if "mobilenet" in name)
RESNET_PRESETS = tuple(name for name in NEW_PRESETS if "resnet50" in name)


def check_logits(model, size):
    logits = model(uint8_images((1, *size, 3)))
    assert tuple(logits.shape) == (1, *size, 3), size
    assert logits.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(logits)))
    if size[0] * size[1] > 1:
        assert np.asarray(logits).std() > 1e-4  # not a constant map


@pytest.mark.parametrize("name", MOBILE_PRESETS + RESNET_PRESETS)
def test_logits_have_the_input_size_and_are_float32(name):
    sizes = [(1, 1), (37, 53)] + ([(500, 500)] if name in MOBILE_PRESETS else [])
    for size in sizes:
        check_logits(small_model(name), size)


@pytest.mark.slow
@pytest.mark.parametrize("name", RESNET_PRESETS)
def test_resnet_models_give_500x500_logits_for_500x500_images(name):
    check_logits(small_model(name), (500, 500))


def test_presets_are_registered_with_their_output_stride_and_parameter_count():
    assert set(NEW_PRESETS) <= set(list_models())
    for name in NEW_PRESETS:
        preset = get_model_entry(name)
        assert preset.output_stride == OUTPUT_STRIDES[name]
        assert preset.backbone in BACKBONES
    model = small_model("lraspp_mobilenetv3small")
    assert parameter_count("lraspp_mobilenetv3small", 3, width=SMALL_WIDTH) == model.count_params()
    # torchvision's LR-ASPP MobileNetV3-Large has 3.2M parameters (21 classes).
    assert 3.1e6 < parameter_count("lraspp_mobilenetv3large") < 3.35e6


def test_uint8_and_float_inputs_give_the_same_logits():
    model = small_model("lraspp_mobilenetv3small")
    images = uint8_images((1, 33, 40, 3), seed=1)
    np.testing.assert_allclose(model(images), model(images.astype("float32")), rtol=1e-5, atol=1e-5)


def test_preprocessing_matches_what_each_backbone_was_trained_with():
    mobile = small_model("fcn8s_mobilenetv3small")
    resnet = small_model("fcn32s_resnet50")
    image = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
    unit = keras.Model(mobile.input, mobile.get_layer("preprocess").output)
    np.testing.assert_allclose(unit(image)[0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-6)
    caffe = keras.Model(resnet.input, resnet.get_layer("preprocess").output)
    np.testing.assert_allclose(
        caffe(image)[0, 0, 0], [255 - 103.939, 127.5 - 116.779, 0 - 123.68], rtol=1e-6
    )
    # keras' own Rescaling is not inside the backbone as well (scaled twice otherwise).
    assert [layer.name for layer in mobile.layers if isinstance(layer, keras.layers.Rescaling)] == ["preprocess"]


@pytest.mark.parametrize("name", ["fcn8s_mobilenetv3small", "lraspp_mobilenetv3small", "deeplabv3_resnet50"])
def test_logits_are_float32_under_mixed_precision(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = create_model(name, **small_kwargs(name))
        logits = model(uint8_images((1, 45, 67, 3)))
        assert model.get_layer("conv_1" if "mobilenet" in name else "conv5_block3_3_conv").compute_dtype == "bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)
    assert logits.dtype == "float32"
    assert tuple(logits.shape) == (1, 45, 67, 3)


@pytest.mark.parametrize("name", ["lraspp_mobilenetv3large", "fcn8s_mobilenetv3small"])
def test_mobilenet_hard_sigmoids_are_layers_and_bf16_inference_agrees(name):
    from kseg.models.inference import inference_model

    model = small_model(name)
    assert not [op for op in model.operations if not isinstance(op, keras.layers.Layer)]  # no bare ops
    gates = [layer for layer in model.layers if layer.name.endswith("squeeze_excite_hard_sigmoid")]
    assert gates and all(layer.get_config()["activation"] == "hard_sigmoid" for layer in gates)
    images = uint8_images((1, 37, 53, 3), seed=8)
    bf16 = inference_model(model, "bf16")
    assert bf16.get_layer("preprocess").compute_dtype == "float32"  # scaled to [-1, 1] in float32
    reference = np.asarray(model(images))
    np.testing.assert_allclose(bf16(images), reference, atol=0.05 * np.abs(reference).max())


# -- output strides -------------------------------------------------------------------


def feature_size(model, layer_name, size, use_input=True):
    layer = model.get_layer(layer_name)
    probe = keras.Model(model.input, layer.input if use_input else layer.output)
    return tuple(probe(np.zeros((1, *size, 3), dtype=np.uint8)).shape[1:3])


@pytest.mark.parametrize("name,stride", [("deeplabv3_resnet50", 16), ("deeplabv3_resnet50_os8", 8)])
def test_deeplab_aspp_sees_the_map_of_its_output_stride(name, stride):
    model = small_model(name)
    # 100x130 is padded to a multiple of the stride: 112x144 at 16, 104x136 at 8.
    padded = (-(-100 // stride) * stride, -(-130 // stride) * stride)
    assert feature_size(model, "aspp_1x1_conv", (100, 130)) == (padded[0] // stride, padded[1] // stride)
    assert feature_size(model, "conv5_block3_out", (100, 130), use_input=False) == (
        padded[0] // stride, padded[1] // stride,
    )  # fmt: skip
    rates = [model.get_layer(f"aspp_atrous{i}_conv").dilation_rate[0] for i in (1, 2, 3)]
    assert rates == ([6, 12, 18] if stride == 16 else [12, 24, 36])
    assert model.get_layer("conv5_block2_2_conv").dilation_rate == ((2, 2) if stride == 16 else (4, 4))
    assert model.get_layer("conv4_block2_2_conv").dilation_rate == ((1, 1) if stride == 16 else (2, 2))


def test_lraspp_high_branch_is_at_stride_16_and_low_branch_at_8():
    model = small_model("lraspp_mobilenetv3large")
    assert feature_size(model, "lraspp_cbr_conv", (128, 192)) == (8, 12)
    assert feature_size(model, "lraspp_low_classifier", (128, 192)) == (16, 24)
    assert model.get_layer("expanded_conv_12_depthwise").strides == (1, 1)
    assert model.get_layer("expanded_conv_14_depthwise").dilation_rate == (2, 2)


@pytest.mark.parametrize("name", ["fcn8s_mobilenetv3large", "fcn8s_mobilenetv3small", "fcn8s_resnet50"])
def test_fcn_taps_are_at_strides_8_16_32(name):
    model = small_model(name)
    assert feature_size(model, "score_skip8", (64, 96)) == (8, 12)
    assert feature_size(model, "score_skip16", (64, 96)) == (4, 6)
    assert feature_size(model, "score_fr", (64, 96)) == (2, 3)


# -- saving ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fcn8s_mobilenetv3large", "lraspp_mobilenetv3small", "deeplabv3_resnet50_os8"])
def test_config_round_trip_gives_identical_outputs(name):
    model = small_model(name)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    images = uint8_images((1, 50, 70, 3), seed=3)
    np.testing.assert_array_equal(model(images), clone(images))


SLOW_TO_SAVE = tuple(name for name in RESNET_PRESETS if name != "deeplabv3_resnet50")


@pytest.mark.parametrize(
    "name",
    [name for name in NEW_PRESETS if name not in SLOW_TO_SAVE]
    + [pytest.param(name, marks=pytest.mark.slow) for name in SLOW_TO_SAVE],
)
def test_keras_file_loads_safely_with_identical_outputs(name, tmp_path):
    from kseg.models.saving import check_segmentation_model, load_model

    model = small_model(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = load_model(path)  # keras' safe mode: no code runs from the file
    assert check_segmentation_model(loaded, str(path)) == 3
    images = uint8_images((1, 77, 31, 3), seed=4)
    np.testing.assert_array_equal(model(images), loaded(images))


# -- weights -----------------------------------------------------------------------------


def write_backbone_weights(backbone_name, path, seed, **variant):
    """Builds keras.applications' backbone with random weights, perturbs them with a seed
    and writes a Keras weights file; returns {layer name: arrays}."""
    backbone = BACKBONES[backbone_name]
    kwargs = application_kwargs(backbone, Variant(**variant))
    kwargs.pop("include_preprocessing", None)  # keras' default (True), as a user writes it
    network = getattr(keras.applications, backbone.application)(
        weights=None, input_shape=(None, None, 3), **kwargs
    )
    rng = np.random.default_rng(seed)
    for variable in network.weights:
        if "variance" in variable.path:
            noise = rng.uniform(0.5, 1.5, variable.shape)
        else:
            noise = rng.normal(0, 0.05, variable.shape)
        variable.assign(noise.astype("float32"))
    network.save_weights(path)
    return {layer.name: layer.get_weights() for layer in network.layers if layer.weights}


@pytest.mark.parametrize(
    "name,backbone,variant",
    [
        ("lraspp_mobilenetv3large", "mobilenetv3large", dict(width=SMALL_WIDTH)),
        ("fcn8s_mobilenetv3small", "mobilenetv3small", dict(width=0.75, minimalistic=True)),
        ("deeplabv3_resnet50_os8", "resnet50", {}),
    ],
)
def test_backbone_weights_load_from_a_keras_weights_file(name, backbone, variant, tmp_path):
    path = str(tmp_path / f"{backbone}.weights.h5")
    written = write_backbone_weights(backbone, path, seed=5, **variant)
    model = create_model(name, num_classes=3, weights=path, **variant)
    assert len(written) > 20
    for layer_name, arrays in written.items():
        for loaded, expected in zip(model.get_layer(layer_name).get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(loaded, expected)
    head = "lraspp_cbr_conv" if "lraspp" in name else ("score_fr" if "fcn" in name else "aspp_1x1_conv")
    assert head not in written  # the head keeps its own initial weights


def batch_norm_momenta(model):
    return {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}


def test_backbones_track_batch_statistics_with_a_short_memory(tmp_path):
    # keras builds MobileNetV3 with momentum 0.999: from random weights its moving
    # statistics would keep their starting values (variance 1) for thousands of steps.
    # Loaded weights do not change the momentum, so a resumed run (built without
    # weights) matches its start.
    from kseg.models.saving import load_model

    model = create_model("fcn8s_mobilenetv3small", **small_kwargs("fcn8s_mobilenetv3small"))
    assert batch_norm_momenta(model) == {BN_MOMENTUM}
    path = tmp_path / "model.keras"
    model.save(path)
    assert batch_norm_momenta(load_model(path)) == {BN_MOMENTUM}
    weights = str(tmp_path / "small.weights.h5")
    write_backbone_weights("mobilenetv3small", weights, seed=7, width=SMALL_WIDTH)
    loaded = create_model("fcn8s_mobilenetv3small", num_classes=3, weights=weights, width=SMALL_WIDTH)
    assert batch_norm_momenta(loaded) == {BN_MOMENTUM}
    resnet = create_model("fcn32s_resnet50", num_classes=3, weights=None)
    assert batch_norm_momenta(resnet) == {BN_MOMENTUM}


def test_moving_statistics_of_a_random_mobilenet_catch_up_with_training_within_an_epoch():
    # From random weights many MobileNetV3 activations have variances far below the
    # moving variance's starting value of 1; at momentum 0.99 that start still dominates
    # after 100 steps, and inference-mode logits are nothing like training's.
    model = create_model("lraspp_mobilenetv3small", **small_kwargs("lraspp_mobilenetv3small"))
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype("float32")
    for _ in range(100):  # the statistics of one batch, as if its weights did not change
        trained = keras.ops.convert_to_numpy(model(images, training=True))
    inferred = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.abs(inferred - trained).max() <= 0.05 * np.abs(trained).max()


def test_a_weights_file_of_another_backbone_is_refused(tmp_path):
    path = str(tmp_path / "small.weights.h5")
    write_backbone_weights("mobilenetv3small", path, seed=6, width=SMALL_WIDTH)
    with pytest.raises(WeightsError, match="MobileNetV3Large"):
        create_model("lraspp_mobilenetv3large", num_classes=3, weights=path, width=SMALL_WIDTH)
    with pytest.raises(WeightsError, match="not found"):
        create_model("fcn8s_resnet50", num_classes=3, weights=str(tmp_path / "missing.h5"))


def test_a_failed_imagenet_download_is_one_clear_error_with_the_way_out(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as raised:
        create_model("lraspp_mobilenetv3small", num_classes=3)
    message = str(raised.value)
    assert "\n" not in message and "URL fetch failure" in message
    assert "--weights PATH" in message and "--weights none" in message


def test_imagenet_weights_need_a_published_width_and_resnet_has_none():
    with pytest.raises(KsegError, match="only for width 0.75 or 1.0"):
        create_model("lraspp_mobilenetv3large", num_classes=3, width=0.5)
    with pytest.raises(KsegError, match="only for width 1.0"):
        create_model("fcn8s_mobilenetv3small", num_classes=3, width=0.75, minimalistic=True)
    with pytest.raises(TypeError):
        create_model("deeplabv3_resnet50", num_classes=3, weights=None, width=0.5)


def test_build_model_passes_only_the_options_a_builder_takes():
    from kseg.config import SETTINGS
    from kseg.training.build import builder_options

    defaults = {key: SETTINGS[key].default for key in ("width", "dropout", "learn_upsampling")}
    config = types.SimpleNamespace(model="fcn8s_resnet50", **defaults)
    assert builder_options(config) == {"learn_upsampling": False}
    config = types.SimpleNamespace(model="deeplabv3_resnet50", **{**defaults, "dropout": 0.1})
    assert builder_options(config) == {"dropout": 0.1}
    config = types.SimpleNamespace(model="lraspp_mobilenetv3small", **{**defaults, "width": 0.5})
    assert builder_options(config) == {"width": 0.5}
    config = types.SimpleNamespace(model="fcn8s", **defaults)
    assert builder_options(config) == defaults
    with pytest.raises(KsegError, match="has no width option"):
        builder_options(types.SimpleNamespace(model="fcn8s_resnet50", **{**defaults, "width": 0.5}))
    with pytest.raises(KsegError, match="has no dropout option"):
        builder_options(types.SimpleNamespace(model="lraspp_mobilenetv3small", **{**defaults, "dropout": 0.2}))


# -- export ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["lraspp_mobilenetv3small", pytest.param("fcn8s_mobilenetv3small", marks=pytest.mark.slow),
     pytest.param("deeplabv3_resnet50", marks=pytest.mark.slow)],
)  # fmt: skip
def test_tflite_float_export_equals_keras_at_any_size(name, tmp_path):
    from kseg.exporting import ExportedModel, ExportTarget, check_export, export_model, sample_images

    model = small_model(name)
    out = export_model(model, tmp_path / "model.tflite", ExportTarget("tflite", mediapipe=False))
    exported = ExportedModel(out, "tflite")
    assert exported.input_size is None
    parity = check_export(model, exported, sample_images(2, sizes=((64, 96), (45, 70)), seed=1))
    assert parity.max_logit > 0.05  # the comparison is not between zeros
    assert parity.max_logit_diff < 1e-3 * max(1.0, parity.max_logit), parity
    assert parity.pixel_agreement > 0.999, parity


# Each exported as the file or folder kseg export writes; ResNet50's dilated stages are the
# case converters most often get wrong at odd sizes.
ANY_SIZE_EXPORTS = (
    ("savedmodel", "saved", "fcn8s_mobilenetv3small"), ("savedmodel", "saved", "lraspp_mobilenetv3small"),
    ("savedmodel", "saved", "deeplabv3_resnet50_os8"), ("onnx", "model.onnx", "lraspp_mobilenetv3small"),
    ("onnx", "model.onnx", "fcn8s_resnet50"), ("onnx", "model.onnx", "deeplabv3_resnet50_os8"),
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("export_format,filename,name", ANY_SIZE_EXPORTS)
def test_savedmodel_and_onnx_exports_equal_keras_at_any_size(export_format, filename, name, tmp_path):
    from kseg.exporting import ExportedModel, ExportTarget, check_export, export_model, sample_images

    model = small_model(name)
    out = export_model(model, tmp_path / filename, ExportTarget(export_format))
    exported = ExportedModel(out, export_format)
    assert exported.input_size is None
    parity = check_export(model, exported, sample_images(2, sizes=((64, 96), (45, 70)), seed=1))
    assert parity.max_logit > 0.05
    tolerance = {"savedmodel": 1e-4, "onnx": 1e-3}[export_format]
    assert parity.max_logit_diff < tolerance * max(1.0, parity.max_logit), parity


JAX_SCRIPT = """
import sys
import keras
import numpy as np
assert keras.backend.backend() == "jax", keras.backend.backend()
from kseg.models import create_model
directory, width, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
for name in names:
    kwargs = {"width": width} if "mobilenet" in name else {}
    model = create_model(name, num_classes=3, weights=None, **kwargs)
    model.load_weights(f"{directory}/{name}.weights.h5")
    for size in ("37x53", "64x96"):
        images = np.load(f"{directory}/images_{size}.npy")
        np.save(f"{directory}/{name}_{size}_jax.npy", np.asarray(model.predict(images, verbose=0)))
"""


@pytest.mark.slow
def test_backbone_models_predict_the_same_under_jax(tmp_path):
    """The new models are pure Keras too: same weights, same logits under JAX."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    names = ("fcn8s_mobilenetv3small", "lraspp_mobilenetv3small", "fcn8s_resnet50", "deeplabv3_resnet50_os8")
    sizes = {"37x53": (37, 53), "64x96": (64, 96)}
    for key, size in sizes.items():
        np.save(tmp_path / f"images_{key}.npy", uint8_images((2, *size, 3), seed=4))
    expected = {}
    for name in names:
        model = small_model(name)
        model.save_weights(tmp_path / f"{name}.weights.h5")
        for key in sizes:
            expected[name, key] = np.asarray(model(np.load(tmp_path / f"images_{key}.npy")))
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path), str(SMALL_WIDTH), *names],
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for (name, key), tf_logits in expected.items():
        jax_logits = np.load(tmp_path / f"{name}_{key}_jax.npy")
        assert jax_logits.shape == tf_logits.shape == (2, *sizes[key], 3), (name, key)
        scale = np.abs(tf_logits).max()
        assert scale > 0.05, (name, key)  # not a comparison of zeros
        np.testing.assert_allclose(jax_logits, tf_logits, rtol=1e-3, atol=1e-3 * scale, err_msg=f"{name} {key}")


@pytest.mark.slow
def test_tflite_int8_export_is_full_integer(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from kseg.exporting import ExportedModel, ExportTarget, check_export, export_model, sample_images

    model = small_model("lraspp_mobilenetv3small")
    calibration = sample_images(6, sizes=((64, 96),), seed=7)
    out = export_model(model, tmp_path / "int8.tflite", ExportTarget("tflite", "int8", (64, 96), calibration))
    interpreter = Interpreter(model_path=out)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    kernels = [t for t in interpreter.get_tensor_details() if "expanded_conv_3_expand" in t["name"]]
    assert kernels and any(t["dtype"] == np.int8 for t in kernels)
    parity = check_export(model, ExportedModel(out, "tflite"), sample_images(2, sizes=((64, 96),), seed=1))
    assert parity.pixel_agreement > 0.6, parity


@pytest.mark.slow
def test_train_evaluate_predict_and_export_an_lraspp_model_from_the_cli(tmp_path):
    """kseg's verbs end to end on a narrow LR-ASPP: train one epoch, evaluate, predict
    whole, tiled and with TTA, bf16, export to TFLite with --check."""
    from click.testing import CliRunner
    from kseg.cli.main import cli

    from kseg.data.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(str(tmp_path / "data"), num_train=4, num_val=2, size=(48, 64), seed=2)
    run = str(tmp_path / "run")
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    invoke("train", "--model", "lraspp_mobilenetv3small", "--weights", "none", "--width", "0.35",
           "--data", "synthetic", "--data-dir", data, "--epochs", "1", "--batch-size", "2",
           "--crop", "48x48", "--optimizer", "adam", "--run-dir", run, "--quiet")  # fmt: skip
    assert "mean IoU" in invoke("evaluate", run, "--data", "synthetic", "--data-dir", data)
    images = str(tmp_path / "images")
    import os

    from kseg.images import write_png

    os.makedirs(images)
    write_png(os.path.join(images, "a.png"), uint8_images((45, 70, 3), seed=9))
    for extra in ([], ["--tile", "32x32", "--overlap", "8"], ["--tta", "flip"], ["--precision", "bf16"]):
        out = str(tmp_path / f"pred{len(os.listdir(tmp_path))}")
        invoke("predict", images, "--model", run, "--out", out, *extra)
        assert any(name.endswith(".png") for name in os.listdir(out))
    invoke("export", run, "--format", "tflite", "--out", str(tmp_path / "m.tflite"), "--check")
    with pytest.raises(AssertionError):  # --width on a model without one is refused
        invoke("train", "--model", "fcn8s_resnet50", "--weights", "none", "--width", "0.5",
               "--data", "synthetic", "--data-dir", data, "--epochs", "1", "--run-dir", str(tmp_path / "r2"))
