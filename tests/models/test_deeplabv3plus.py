"""DeepLab v3+ (kseg/models/deeplab.py): ASPP at output stride 16 or 8, a decoder over
the stride-4 features (48-channel projection, two 3x3 convolutions, bilinear x4), and a
full-integer TFLite file of the MobileNetV3Large variant."""

import keras
import numpy as np
import pytest

from kseg.models import create_model
from kseg.models.deeplab import build_deeplabv3plus


def inputs_of(model, layer_name, size):
    layer = model.get_layer(layer_name)
    result = keras.Model(model.input, layer.input)(np.zeros((1, *size, 3), np.uint8))
    return [tuple(t.shape[1:]) for t in result] if isinstance(result, list) else tuple(result.shape[1:])


@pytest.mark.parametrize("name,stride", [("deeplabv3plus_resnet50", 16), ("deeplabv3plus_resnet50_os8", 8)])
def test_resnet_decoder_joins_aspp_and_stride_4_features(name, stride):
    model = create_model(name, num_classes=3, weights=None)
    padded = (-(-100 // stride) * stride, -(-70 // stride) * stride)
    assert inputs_of(model, "aspp_1x1_conv", (100, 70)) == (padded[0] // stride, padded[1] // stride, 2048)
    rates = [model.get_layer(f"aspp_atrous{i}_conv").dilation_rate[0] for i in (1, 2, 3)]
    assert rates == ([6, 12, 18] if stride == 16 else [12, 24, 36])
    assert model.get_layer("decoder_upsample").factor == stride // 4
    aspp_map, low = inputs_of(model, "decoder_concat", (100, 70))
    assert aspp_map == (padded[0] // 4, padded[1] // 4, 256)
    assert low == (padded[0] // 4, padded[1] // 4, 48)
    assert inputs_of(model, "decoder_low_conv", (100, 70))[-1] == 256  # conv2_block3_out
    assert model.get_layer("decoder_low_conv").kernel_size == (1, 1)
    assert [model.get_layer(f"decoder_{i}_conv").kernel_size for i in (1, 2)] == [(3, 3), (3, 3)]
    assert model.get_layer("upsample").factor == 4
    logits = model(np.random.default_rng(0).integers(0, 256, (1, 75, 61, 3)))
    assert tuple(logits.shape) == (1, 75, 61, 3)


def test_mobilenet_variant_is_dilated_to_stride_16():
    model = create_model("deeplabv3plus_mobilenetv3large", num_classes=3, weights=None, width=0.35)
    assert inputs_of(model, "aspp_1x1_conv", (64, 96))[:2] == (4, 6)
    assert inputs_of(model, "decoder_low_conv", (64, 96))[:2] == (16, 24)  # expanded_conv_2_add
    assert model.get_layer("expanded_conv_12_depthwise").strides == (1, 1)
    assert model.get_layer("expanded_conv_14_depthwise").dilation_rate == (2, 2)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="backbone"):
        build_deeplabv3plus("mobilenetv3small", 3, None)
    with pytest.raises(ValueError, match="output_stride"):
        build_deeplabv3plus("resnet50", 3, None, output_stride=32)
    with pytest.raises(ValueError, match="dropout"):
        create_model("deeplabv3plus_resnet50", num_classes=3, weights=None, dropout=1.0)


@pytest.mark.slow
def test_mobilenet_variant_converts_to_a_full_integer_tflite_file_that_runs(tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from test_backbones import perturb

    from kseg.exporting import ExportedModel, ExportTarget, check_export, export_model, sample_images

    model = perturb(create_model("deeplabv3plus_mobilenetv3large", num_classes=3, weights=None, width=0.35))
    calibration = sample_images(4, sizes=((64, 96),), seed=7)
    out = export_model(model, tmp_path / "int8.tflite", ExportTarget("tflite", "int8", (64, 96), calibration))
    interpreter = Interpreter(model_path=out)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    kernels = [t for t in interpreter.get_tensor_details() if "decoder_1_conv" in t["name"]]
    assert kernels and any(t["dtype"] == np.int8 for t in kernels)
    exported = ExportedModel(out, "tflite")
    assert exported.input_size == (64, 96)
    logits = exported(sample_images(1, sizes=((64, 96),), seed=2)[0])
    assert logits.shape == (64, 96, 3) and np.isfinite(logits).all()
    parity = check_export(model, exported, sample_images(2, sizes=((64, 96),), seed=1))
    assert parity.pixel_agreement > 0.5, parity  # random weights: a loose sanity bound
