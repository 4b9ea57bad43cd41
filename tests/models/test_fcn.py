import keras
import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.models import (
    MODEL_PRESETS,
    create_model,
    fcn8s,
    fcn16s,
    fcn32s,
    list_models,
    parameter_count,
    register_model,
)

SMALL = dict(num_classes=3, weights=None, width=0.0625)


@pytest.fixture(scope="module")
def small_models():
    names = ("fcn32s", "fcn16s", "fcn8s")
    return {name: randomize_weights(create_model(name, **SMALL), scale=0.05) for name in names}


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("size", [(1, 1), (37, 53), (360, 480), (500, 500), (1024, 2048)])
def test_logits_have_the_input_size(small_models, name, size):
    batch = 1 if size == (1024, 2048) else 2
    images = np.random.default_rng(0).integers(0, 256, (batch, *size, 3), dtype=np.uint8)
    logits = small_models[name](images)
    assert tuple(logits.shape) == (batch, *size, 3)
    assert logits.dtype == "float32"


def test_uint8_and_float_inputs_give_the_same_logits(small_models):
    images = np.random.default_rng(1).integers(0, 256, (1, 33, 40, 3), dtype=np.uint8)
    model = small_models["fcn8s"]
    np.testing.assert_allclose(model(images), model(images.astype("float32")), rtol=1e-6)


def test_preprocessing_flips_to_bgr_and_subtracts_the_imagenet_mean():
    model = create_model("fcn32s", **SMALL)
    preprocess = keras.Model(model.input, model.get_layer("preprocess").output)
    image = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    np.testing.assert_allclose(
        preprocess(image)[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6
    )


def test_padding_is_the_mean_colour_and_logits_are_cropped(small_models):
    """An image of 40x50 is padded to 64x64 with the ImageNet mean colour: the same as
    padding it by hand with that colour and cropping the logits."""
    from kseg.models.layers import IMAGENET_BGR_MEAN

    model = small_models["fcn8s"]
    image = np.random.default_rng(2).integers(0, 256, (1, 40, 50, 3)).astype("float32")
    by_hand = np.empty((1, 64, 64, 3), dtype="float32")
    by_hand[...] = IMAGENET_BGR_MEAN[::-1]  # RGB order
    by_hand[:, :40, :50] = image
    np.testing.assert_allclose(
        model(image), np.asarray(model(by_hand))[:, :40, :50], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_logits_are_float32_under_mixed_precision(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = create_model("fcn8s", **SMALL)
        logits = model(np.zeros((1, 45, 67, 3), dtype=np.uint8))
        assert model.get_layer("fc6").compute_dtype != "float32"
    finally:
        keras.config.set_dtype_policy(previous)
    assert logits.dtype == "float32"
    assert tuple(logits.shape) == (1, 45, 67, 3)


def test_layer_names_follow_keras_vgg16_and_fcn():
    names = {layer.name for layer in create_model("fcn8s", **SMALL).layers}
    assert {"block3_pool", "block4_pool", "block5_pool", "fc6", "fc7", "score_fr"} <= names
    assert {"score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore8"} <= names


def test_skip_and_score_layers_start_at_zero_and_upsampling_bilinear():
    model = create_model("fcn8s", **SMALL)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert not any(np.any(w) for w in model.get_layer(name).get_weights())
    from kseg.models.bilinear import bilinear_kernel_2d

    kernel = model.get_layer("upscore8").get_weights()[0]
    np.testing.assert_array_equal(kernel[:, :, 1, 1], bilinear_kernel_2d(16))


def test_learn_upsampling_controls_only_the_final_upsampling():
    fixed = create_model("fcn8s", **SMALL)
    assert not fixed.get_layer("upscore8").trainable
    assert fixed.get_layer("upscore2").trainable and fixed.get_layer("upscore_pool4").trainable
    assert create_model("fcn8s", learn_upsampling=True, **SMALL).get_layer("upscore8").trainable


def test_config_round_trip_gives_identical_outputs(small_models):
    model = small_models["fcn16s"]
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    images = np.random.default_rng(3).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model(images), clone(images))


def test_keras_file_save_and_load_give_identical_outputs(small_models, tmp_path):
    model = small_models["fcn8s"]
    path = tmp_path / "fcn8s.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(4).integers(0, 256, (1, 77, 31, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model(images), loaded(images))


def test_batch_of_two_equals_two_single_predictions(small_models):
    model = small_models["fcn8s"]
    images = np.random.default_rng(5).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    together = np.asarray(model(images))
    for i in range(2):
        np.testing.assert_allclose(together[i], np.asarray(model(images[i : i + 1]))[0], atol=1e-5)


def test_fcn16s_init_from_fcn32s_copies_the_shared_layers(small_models, tmp_path):
    source = small_models["fcn32s"]
    path = tmp_path / "fcn32s.keras"
    source.save(path)
    for init_from in (source, str(path)):
        target = fcn16s(init_from=init_from, **SMALL)
        for name in ("block1_conv1", "block5_conv3", "fc6", "fc7", "score_fr"):
            for a, b in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
                np.testing.assert_array_equal(a, b)
        assert not target.get_layer("score_pool4").get_weights()[0].any()


def test_transfer_report_names_what_was_not_copied(small_models):
    from kseg.models import transfer_weights

    target = fcn8s(**SMALL)
    report = transfer_weights(small_models["fcn16s"], target)
    skipped = dict(report.skipped)
    assert "score_pool3" in skipped and "upscore8" in skipped
    assert "upscore16" in skipped  # only in the source
    assert {"fc6", "fc7", "score_fr", "score_pool4", "upscore2"} <= set(report.copied)


def test_init_from_a_model_with_other_classes_skips_the_score_layers(small_models):
    target = fcn16s(num_classes=5, weights=None, width=0.0625, init_from=small_models["fcn32s"])
    np.testing.assert_array_equal(
        target.get_layer("fc7").get_weights()[0], small_models["fcn32s"].get_layer("fc7").get_weights()[0]
    )
    assert not target.get_layer("score_fr").get_weights()[0].any()


def test_init_from_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(KsegError, match="model file not found"):
        fcn16s(init_from=str(tmp_path / "nope.keras"), **SMALL)


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("width", [0.0625, 0.25])
def test_parameter_count_matches_the_built_model(name, width):
    model = create_model(name, num_classes=7, weights=None, width=width)
    assert parameter_count(name, 7, width=width) == model.count_params()


def test_parameter_count_of_the_full_models_allocates_nothing_and_keeps_the_seed():
    from kseg.models import keras_internals

    keras.utils.set_random_seed(0)
    expected = create_model("fcn32s", **SMALL).get_weights()
    keras.utils.set_random_seed(0)
    # VGG16 (138,357,544 parameters) less its 1000-class predictions, plus 21-class scoring
    assert parameter_count("fcn8s", 21) == 134_489_759
    assert not keras_internals.pending_variables()
    for built, first in zip(create_model("fcn32s", **SMALL).get_weights(), expected):
        np.testing.assert_array_equal(built, first)


def test_every_vgg16_fcn_preset_builds_the_model_its_row_names():
    for preset in [p for p in MODEL_PRESETS if p.backbone.startswith("vgg16") and p.name.startswith("fcn")]:
        assert preset.architecture in ("fcn", "caffe_fcn")
        assert preset.options == ("width", "dropout", "learn_upsampling")
        model = create_model(preset.name, num_classes=3, weights=None, width=0.0625)
        assert model.name == preset.name
        assert preset.output_stride == int(preset.name[3:5].rstrip("s"))  # fcn8s..., fcn32s...
    assert [p.name for p in MODEL_PRESETS if p.backbone == "vgg16"] == ["fcn32s", "fcn16s", "fcn8s"]
    assert {p.name: p.weights for p in MODEL_PRESETS if p.backbone.startswith("vgg16")} == {
        "fcn32s": "imagenet", "fcn16s": "imagenet", "fcn8s": "imagenet", "fcn32s_vgg16bn": None,
        "fcn16s_vgg16bn": None, "fcn8s_vgg16bn": None, "fcn32s_caffe": None, "fcn16s_caffe": None,
        "fcn8s_caffe": None, "fcn8s_atonce_caffe": None, "segnet": None,
    }  # fmt: skip


def test_a_preset_s_definition_is_not_an_option():
    with pytest.raises(KsegError, match="output_stride is part of the model's definition"):
        create_model("fcn8s", num_classes=3, weights=None, output_stride=16)


def test_registry_lists_models_and_rejects_duplicates_and_unknown_names():
    assert {"fcn32s", "fcn16s", "fcn8s"} <= set(list_models())
    with pytest.raises(ValueError, match="already registered"):
        register_model("fcn8s", output_stride=8)(lambda: None)
    with pytest.raises(KsegError, match="unknown model 'fcn9s'.*fcn8s"):
        create_model("fcn9s")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=3, dropout=1.0), "dropout"),
        (dict(num_classes=3, width=0), "width"),
        (dict(num_classes=3, weights="imagenet", width=0.5), "width=1"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, message):
    kwargs.setdefault("weights", None)
    with pytest.raises(ValueError, match=message):
        fcn32s(**kwargs)


def test_missing_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(KsegError, match="weights file not found"):
        fcn32s(num_classes=3, weights=str(tmp_path / "missing.h5"))


def test_random_initialisation_keeps_the_signal_through_all_relu_layers():
    """With weights=None the deepest features keep the scale of the first layer's
    (Glorot, keras' default, shrinks them about 700-fold and training stalls)."""
    keras.utils.set_random_seed(0)
    model = create_model("fcn8s", num_classes=3, weights=None, width=0.125, dropout=0)
    names = ("block1_conv1", "fc7")
    features = keras.Model(model.input, [model.get_layer(n).output for n in names])
    images = np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    first, last = (float(np.mean(np.abs(f))) for f in features(images))
    assert 0.1 < first < 10
    assert 0.1 < last / first < 10
