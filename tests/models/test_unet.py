"""U-Net (kseg/models/unet.py): the paper's 4 down / 4 up stages with concatenated skips,
its batch-norm and bilinear variants, and the U-Net decoder on keras.applications
encoders, whose weights load from a keras weights file."""

import keras
import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.models import create_model
from kseg.models.unet import build_unet


def feature_size(model, layer_name, size, output=True):
    layer = model.get_layer(layer_name)
    probe = keras.Model(model.input, layer.output if output else layer.input)
    result = probe(np.zeros((1, *size, 3), np.uint8))
    return [tuple(t.shape[1:]) for t in result] if isinstance(result, list) else tuple(result.shape[1:])


def test_unet_has_four_down_and_four_up_stages_with_concatenated_skips():
    model = create_model("unet", num_classes=3, weights=None, width=0.125)
    # 75x61 is padded to 80x64: stride 16 at the bottleneck
    assert feature_size(model, "bottleneck_conv2", (75, 61)) == (5, 4, 128)
    for stage, (channels, stride) in enumerate(((8, 1), (16, 2), (32, 4), (64, 8)), start=1):
        assert feature_size(model, f"down{stage}_conv2", (75, 61)) == (80 // stride, 64 // stride, channels)
        skip, upsampled = feature_size(model, f"up{stage}_concat", (75, 61), output=False)
        assert skip == upsampled == (80 // stride, 64 // stride, channels)  # the paper halves on the way up
        assert feature_size(model, f"up{stage}_conv2", (75, 61)) == (80 // stride, 64 // stride, channels)
    convs = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D]
    assert len(convs) == 2 * 9 + 1  # two per stage and the bottleneck, and the classifier
    assert all(layer.kernel_size == (3, 3) and layer.padding == "same" for layer in convs[:-1])
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len([layer for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)]) == 4


def test_batch_norm_and_bilinear_variants():
    bn = create_model("unet_bn", num_classes=3, weights=None, width=0.125)
    assert len([layer for layer in bn.layers if isinstance(layer, keras.layers.BatchNormalization)]) == 18
    bilinear = build_unet(3, width=0.125, upsampling="bilinear")
    assert not [layer for layer in bilinear.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    # bilinear keeps the channels: the concatenation has twice as many as the skip
    assert feature_size(bilinear, "up1_concat", (32, 32))[-1] == 8 + 16
    for model in (bn, bilinear):
        logits = model(np.random.default_rng(0).integers(0, 256, (1, 45, 33, 3)))
        assert tuple(logits.shape) == (1, 45, 33, 3) and logits.dtype == "float32"


def test_unet_arguments_are_checked():
    with pytest.raises(KsegError, match="--weights none"):
        create_model("unet", num_classes=3, weights="imagenet")
    with pytest.raises(ValueError, match="upsampling"):
        build_unet(3, upsampling="nearest")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("unet_bn", num_classes=1, weights=None)
    with pytest.raises(ValueError, match="width"):
        create_model("unet", num_classes=3, weights=None, width=1.5)


def test_encoder_unet_decoder_sees_every_tap_at_its_stride():
    model = create_model("unet_mobilenetv3large", num_classes=3, weights=None, width=0.35)
    for stride in (16, 8, 4, 2):
        upsampled, tap = feature_size(model, f"decoder{stride}_concat", (64, 96), output=False)
        assert upsampled[:2] == tap[:2] == (64 // stride, 96 // stride)
    assert feature_size(model, "classifier", (64, 96)) == (64, 96, 3)
    resnet = create_model("unet_resnet50", num_classes=3, weights=None)
    _, tap = feature_size(resnet, "decoder4_concat", (64, 96), output=False)
    assert tap == (16, 24, 256)  # conv2_block3_out


def test_encoder_unet_loads_the_backbone_weights_from_a_file(tmp_path):
    network = keras.applications.MobileNetV3Large(weights=None, include_top=False, alpha=0.75,
                                                  input_shape=(None, None, 3))  # fmt: skip
    rng = np.random.default_rng(3)
    for variable in network.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    path = str(tmp_path / "mobilenet.weights.h5")
    network.save_weights(path)
    model = create_model("unet_mobilenetv3large", num_classes=3, weights=path, width=0.75)
    for name in ("expanded_conv_2_add", "expanded_conv_project", "conv_1"):
        for loaded, written in zip(model.get_layer(name).get_weights(), network.get_layer(name).get_weights()):
            np.testing.assert_array_equal(loaded, written)
    with pytest.raises(KsegError, match="width"):
        create_model("unet_mobilenetv3large", num_classes=3, width=0.5)  # no ImageNet weights at 0.5
