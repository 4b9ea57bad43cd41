"""fc6 as im2col + matmul, fp32/bf16 inference models, and the FLOP count."""

import keras
import numpy as np
import pytest

from kseg.cpu import cpu_has_bf16
from kseg.models.caffe_fcn import caffe_fcn
from kseg.models.fcn import build_fcn
from kseg.models.flops import count_flops, layer_costs
from kseg.models.inference import inference_model
from kseg.models.layers import Im2ColConv2D


def paired_convs(config, input_shape, seed=0):
    """A keras Conv2D and an Im2ColConv2D with the same config and weights."""
    rng = np.random.default_rng(seed)
    conv, im2col = keras.layers.Conv2D(**config), Im2ColConv2D(**config)
    conv.build(input_shape)
    im2col.build(input_shape)
    conv.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.get_weights()])
    im2col.set_weights(conv.get_weights())
    return conv, im2col


@pytest.mark.parametrize("kernel", [(7, 7), (3, 5), (4, 4), (2, 3)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_im2col_conv_equals_conv2d(kernel, padding):
    x = np.random.default_rng(1).normal(size=(2, 9, 13, 6)).astype("float32")
    conv, im2col = paired_convs({"filters": 5, "kernel_size": kernel, "padding": padding}, x.shape)
    expected = np.asarray(conv(x))
    np.testing.assert_allclose(np.asarray(im2col(x)), expected, rtol=1e-5, atol=1e-4)


def test_im2col_conv_falls_back_for_strided_and_dilated():
    x = np.random.default_rng(2).normal(size=(1, 12, 12, 3)).astype("float32")
    for extra in ({"strides": 2}, {"dilation_rate": 2}):
        config = {"filters": 4, "kernel_size": 3, "padding": "same", **extra}
        conv, im2col = paired_convs(config, x.shape)
        np.testing.assert_allclose(np.asarray(im2col(x)), np.asarray(conv(x)), rtol=1e-5, atol=1e-5)


def test_fc6_is_im2col_and_survives_saving(tmp_path):
    model = build_fcn(8, 3, weights=None, width=0.0625, dropout=0)
    assert type(model.get_layer("fc6")) is Im2ColConv2D
    assert model.get_layer("fc6").kernel.shape == (7, 7, 32, 256)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert type(loaded.get_layer("fc6")) is Im2ColConv2D


def randomized(model, seed=0):
    """Gives every weight (zero-initialised scores included) random values."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def with_conv2d_fc6(model):
    """The model as earlier kseg versions built it: fc6 a keras Conv2D."""
    copy = keras.models.clone_model(
        model,
        clone_function=lambda layer: keras.layers.Conv2D.from_config(layer.get_config())
        if layer.name == "fc6" else layer.__class__.from_config(layer.get_config()),
    )  # fmt: skip
    copy.set_weights(model.get_weights())
    return copy


def test_fp32_inference_model_is_the_model_itself():
    model = build_fcn(8, 3, weights=None, width=0.0625)
    assert inference_model(model, "fp32") is model


def test_inference_model_turns_an_older_conv2d_fc6_into_a_matmul():
    model = randomized(build_fcn(8, 3, weights=None, width=0.0625, dropout=0))
    older = with_conv2d_fc6(model)
    assert type(older.get_layer("fc6")) is keras.layers.Conv2D
    rebuilt = inference_model(older, "fp32")
    assert rebuilt is not older and type(rebuilt.get_layer("fc6")) is Im2ColConv2D
    image = np.random.default_rng(3).integers(0, 256, (1, 45, 70, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(rebuilt(image)), np.asarray(older(image)), rtol=1e-4, atol=1e-4)


def test_bf16_inference_model_keeps_weights_in_bf16_and_logits_in_float32():
    model = randomized(build_fcn(8, 4, weights=None, width=0.0625, dropout=0))
    bf16 = inference_model(model, "bf16")
    for layer in bf16.layers:
        for weight in layer.weights:
            assert weight.dtype == "bfloat16", (layer.name, weight.dtype)
    assert bf16.get_layer("preprocess").compute_dtype == "float32"
    image = np.random.default_rng(4).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    expected, logits = np.asarray(model(image)), np.asarray(bf16(image))
    assert logits.dtype == np.float32 and logits.shape == expected.shape
    # bfloat16 keeps 8 bits of mantissa: about 1% relative error per value
    assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()
    # and the original model is untouched
    assert all(weight.dtype == "float32" for weight in model.weights)


def test_bf16_caffe_fcn_keeps_its_preprocessing_and_logits_in_float32():
    model = randomized(caffe_fcn("fcn8s", num_classes=3, width=0.0625, dropout=0))
    bf16 = inference_model(model, "bf16")
    assert bf16.get_layer("preprocess").compute_dtype == "float32"
    image = np.random.default_rng(5).integers(0, 256, (1, 37, 45, 3), dtype=np.uint8)
    expected, logits = np.asarray(model(image)), np.asarray(bf16(image))
    assert logits.dtype == np.float32 and logits.shape == expected.shape
    assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()


def test_unknown_precision_is_refused():
    model = build_fcn(8, 3, weights=None, width=0.0625)
    with pytest.raises(ValueError, match="precision"):
        inference_model(model, "fp8")


def test_cpu_has_bf16_answers_a_bool_or_none():
    assert cpu_has_bf16() in (True, False, None)


def test_bf16_is_flagged_as_slow_only_on_a_cpu_known_to_lack_it(monkeypatch):
    from kseg.models import inference

    for has_bf16, expected in ((False, True), (True, False), (None, False)):
        monkeypatch.setattr(inference, "cpu_has_bf16", lambda answer=has_bf16: answer)
        assert (inference.slow_precision_warning("bf16") is not None) is expected, has_bf16
        assert inference.slow_precision_warning("fp32") is None
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)
    assert "--precision bf16 will be slower" in inference.slow_precision_warning("bf16")


def vgg16_fcn8s_flops(height, width, num_classes):
    """FCN-8s FLOPs written out by hand from the paper's architecture (padded input)."""
    height, width = -(-height // 32) * 32, -(-width // 32) * 32
    flops, channels, size = 0, 3, (height, width)
    pools = {}
    for block, convs, block_channels in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)):
        for _ in range(convs):
            flops += 2 * size[0] * size[1] * 9 * channels * block_channels
            channels = block_channels
        size = (size[0] // 2, size[1] // 2)
        pools[block] = size
    h5, w5 = pools[5]
    flops += 2 * h5 * w5 * 49 * 512 * 4096 + 2 * h5 * w5 * 4096 * 4096 + 2 * h5 * w5 * 4096 * num_classes
    flops += 2 * h5 * w5 * 16 * num_classes**2  # upscore2 (on its input)
    flops += 2 * pools[4][0] * pools[4][1] * (512 * num_classes + 16 * num_classes**2)  # score_pool4, upscore_pool4
    flops += 2 * pools[3][0] * pools[3][1] * (256 * num_classes + 256 * num_classes**2)  # score_pool3, upscore8
    return flops


@pytest.mark.parametrize("size", [(512, 1024), (500, 500), (37, 53)])
def test_flop_count_matches_the_architecture(size):
    model = build_fcn(8, 19, weights=None)
    assert count_flops(model, *size) == vgg16_fcn8s_flops(*size, 19)
    assert count_flops(model, *size, batch=4) == 4 * count_flops(model, *size)
    costs = {cost.name: cost for cost in layer_costs(model, *size)}
    assert costs["logits"].output_shape == (1, *size, 19)
    assert costs["block1_pool"].flops == 0
