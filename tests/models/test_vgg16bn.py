"""FCNs on VGG16 with batch normalisation (`fcn8s_vgg16bn`, ...), for random weights."""

import keras
import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.models import create_model, parameter_count
from kseg.models.saving import load_model

NAMES = ("fcn32s_vgg16bn", "fcn16s_vgg16bn", "fcn8s_vgg16bn")
SMALL = dict(num_classes=3, weights=None, width=0.0625)


@pytest.fixture(scope="module")
def small_models():
    return {name: randomize_weights(create_model(name, **SMALL), scale=0.05) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(1, 1), (37, 53), (500, 500)])
def test_logits_have_the_input_size(small_models, name, size):
    images = np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    logits = small_models[name].predict(images, verbose=0)
    assert logits.shape == (1, *size, 3) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_every_convolution_is_batch_normalised_and_starts_as_identity():
    model = create_model("fcn8s_vgg16bn", num_classes=3, weights=None, width=0.125)
    convs = [layer for layer in model.layers if layer.name.startswith(("block", "fc"))
             and isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 15  # 13 VGG16 convolutions, fc6 and fc7
    for conv in convs:
        assert not conv.use_bias and conv.activation is keras.activations.linear, conv.name
        norm = model.get_layer(f"{conv.name}_bn")
        gamma, beta, mean, variance = (np.asarray(w) for w in norm.get_weights())
        assert (gamma == 1).all() and (beta == 0).all() and (mean == 0).all() and (variance == 1).all()
        assert isinstance(model.get_layer(f"{conv.name}_relu"), keras.layers.ReLU)
    # the same layer names as the plain FCN elsewhere: score layers start at zero
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert not np.asarray(model.get_layer(name).kernel).any()


def test_training_mode_normalises_each_channel():
    keras.utils.set_random_seed(0)
    model = create_model("fcn8s_vgg16bn", num_classes=3, weights=None, width=0.125, dropout=0)
    feature = keras.Model(model.input, model.get_layer("block3_conv3_relu").input)
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    values = np.asarray(feature(images, training=True))
    np.testing.assert_allclose(values.mean(axis=(0, 1, 2)), 0, atol=1e-3)
    np.testing.assert_allclose(values.std(axis=(0, 1, 2)), 1, atol=2e-2)


def test_keras_file_round_trip_and_parameter_count(small_models, tmp_path):
    model = small_models["fcn8s_vgg16bn"]
    path = tmp_path / "bn.keras"
    model.save(path)
    images = np.random.default_rng(1).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    np.testing.assert_allclose(load_model(str(path)).predict(images, verbose=0),
                               model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)
    assert parameter_count("fcn8s_vgg16bn", 3, width=0.0625) == model.count_params()
    plain = create_model("fcn8s", **SMALL).count_params()
    assert model.count_params() > plain  # BN adds scale, offset and statistics


def test_imagenet_weights_are_refused_with_the_way_out():
    with pytest.raises(KsegError, match="--weights none"):
        create_model("fcn8s_vgg16bn", num_classes=3, weights="imagenet")


def test_init_from_a_trained_fcn32s_vgg16bn(small_models):
    from kseg.models import transfer_weights

    target = create_model("fcn16s_vgg16bn", **SMALL)
    report = transfer_weights(small_models["fcn32s_vgg16bn"], target)
    assert "block1_conv1_bn" in report.copied and "score_fr" in report.copied
    np.testing.assert_array_equal(
        np.asarray(target.get_layer("block1_conv1_bn").moving_variance),
        np.asarray(small_models["fcn32s_vgg16bn"].get_layer("block1_conv1_bn").moving_variance),
    )
