"""SegNet (kseg/models/segnet.py) and its index unpooling (MaxPoolingMask, MaxUnpooling in
kseg/models/layers.py): exact against a NumPy reference of arg-max unpooling, ties
included, under TensorFlow, JAX and in the exported files."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.models import create_model
from kseg.models.layers import MaxPoolingMask, MaxUnpooling


def reference_unpool(x, values):
    """Index unpooling as SegNet defines it: each value of `values` (b, h, w, c) goes to
    the arg-max of its 2x2 window of `x` (b, 2h, 2w, c), the first maximum in row-major
    order (NumPy's argmax, TensorFlow's MaxPoolWithArgmax); zeros elsewhere."""
    batch, height, width, channels = x.shape
    windows = x.reshape(batch, height // 2, 2, width // 2, 2, channels).transpose(0, 1, 3, 5, 2, 4)
    first = windows.reshape(batch, height // 2, width // 2, channels, 4).argmax(-1)
    out = np.zeros_like(x)
    b, i, j, c = np.indices(first.shape)
    out[b, 2 * i + first // 2, 2 * j + first % 2, c] = values
    return out


def unpool(x, values):
    pooled = keras.ops.max_pool(x, 2, 2)
    mask = MaxPoolingMask()([x, pooled])
    return np.asarray(MaxUnpooling()([values, mask])), np.asarray(mask)


def tie_heavy(shape, seed):
    """Integers in {0, 1, 2}: most windows hold their maximum more than once."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype("float32")


def test_reference_puts_values_at_the_first_maximum():
    x = np.array([[5, 5], [1, 5]], "float32").reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(reference_unpool(x, np.full((1, 1, 1, 1), 7.0))[0, :, :, 0], [[7, 0], [0, 0]])
    x = np.array([[1, 2], [3, 3]], "float32").reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(reference_unpool(x, np.full((1, 1, 1, 1), 7.0))[0, :, :, 0], [[0, 0], [7, 0]])


@pytest.mark.parametrize("kind", ["ties", "distinct", "all equal"])
def test_unpooling_equals_index_unpooling(kind):
    shape = (2, 8, 12, 5)
    if kind == "ties":
        x = tie_heavy(shape, 1)
    elif kind == "distinct":
        x = np.random.default_rng(2).normal(size=shape).astype("float32")
    else:
        x = np.full(shape, 3.0, "float32")
    values = np.random.default_rng(3).normal(size=(2, 4, 6, 5)).astype("float32")
    out, mask = unpool(x, values)
    np.testing.assert_array_equal(out, reference_unpool(x, values))
    # exactly one position per window, also where all four tie
    windows = mask.reshape(2, 4, 2, 6, 2, 5).sum(axis=(2, 4))
    assert (windows == 1).all()
    if kind == "ties":
        # the input really has ties: some windows hold their maximum twice or more
        hits = (x == np.repeat(np.repeat(keras.ops.max_pool(x, 2, 2), 2, 1), 2, 2))
        assert (hits.reshape(2, 4, 2, 6, 2, 5).sum(axis=(2, 4)) > 1).mean() > 0.3


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_unpooling_is_exact_in_half_precision(dtype):
    x = tie_heavy((1, 6, 6, 3), 4)
    values = np.random.default_rng(5).normal(size=(1, 3, 3, 3)).astype("float32")
    pooled = keras.ops.max_pool(keras.ops.cast(x, dtype), 2, 2)
    mask = MaxPoolingMask(dtype=dtype)([keras.ops.cast(x, dtype), pooled])
    out = MaxUnpooling(dtype=dtype)([keras.ops.cast(values, dtype), mask])
    expected = reference_unpool(x, np.asarray(keras.ops.cast(keras.ops.cast(values, dtype), "float32")))
    np.testing.assert_array_equal(np.asarray(keras.ops.cast(out, "float32")), expected)


JAX_SCRIPT = """
import sys
import numpy as np
import keras
assert keras.backend.backend() == "jax"
from kseg.models.layers import MaxPoolingMask, MaxUnpooling
x, values = np.load(sys.argv[1]), np.load(sys.argv[2])
mask = MaxPoolingMask()([x, keras.ops.max_pool(x, 2, 2)])
np.save(sys.argv[3], np.asarray(MaxUnpooling()([values, mask])))
"""


def test_unpooling_is_exact_under_jax(tmp_path):
    pytest.importorskip("jax")
    x = tie_heavy((2, 8, 10, 4), 6)
    values = np.random.default_rng(7).normal(size=(2, 4, 5, 4)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "v.npy", values)
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "x.npy"), str(tmp_path / "v.npy"), str(tmp_path / "o.npy")],
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), reference_unpool(x, values))


def small_segnet(seed=0):
    return randomize_weights(create_model("segnet", num_classes=3, weights=None, width=0.0625), seed, 0.2)


def test_segnet_decoder_unpools_with_each_encoder_blocks_indices():
    model = small_segnet()
    for block in range(1, 6):
        unpool_layer = model.get_layer(f"decoder{block}_unpool")
        mask_layer = unpool_layer._inbound_nodes[0].input_tensors[1]._keras_history.operation
        assert mask_layer.name == f"block{block}_pool_mask"
    # no learned upsampling: every x2 step is an unpooling
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    # 13 encoder and 13 decoder convolutions, each batch-normalised, and the classifier
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 27 and convs[-1] == "classifier"


def test_segnet_layer_outputs_match_the_reference_inside_the_model():
    model = small_segnet(1)
    probe = keras.Model(
        model.input,
        [model.get_layer("block3_conv3_relu").output, model.get_layer("decoder3_unpool").input[0],
         model.get_layer("decoder3_unpool").output],
    )  # fmt: skip
    before, values, after = (np.asarray(t) for t in probe(np.random.default_rng(0).integers(0, 256, (1, 75, 61, 3))))
    np.testing.assert_array_equal(after, reference_unpool(before, values))


def test_segnet_refuses_pretrained_weights():
    with pytest.raises(KsegError, match="--weights none"):
        create_model("segnet", num_classes=3, weights="imagenet")


EXPORTS = (("tflite", "model.tflite"), ("onnx", "model.onnx"), ("savedmodel", "saved"))


@pytest.mark.slow
@pytest.mark.parametrize("export_format,filename", EXPORTS)
def test_segnet_exports_agree_with_keras(export_format, filename, tmp_path):
    """Unpooling converts to builtins (TFLite has no arg-max pooling) and agrees with the
    Keras model on >= 99.9% of the pixels at an odd size and a multiple of 32."""
    from kseg.exporting import ExportedModel, ExportTarget, check_export, export_model, sample_images

    model = small_segnet(2)
    # any size: the TFLite file without MediaPipe's fixed input
    options = {"mediapipe": False} if export_format == "tflite" else {}
    out = export_model(model, tmp_path / filename, ExportTarget(export_format, **options))
    exported = ExportedModel(out, export_format)
    assert exported.input_size is None
    parity = check_export(model, exported, sample_images(2, sizes=((75, 61), (64, 96)), seed=1))
    assert parity.max_logit > 0.05, parity
    assert parity.pixel_agreement >= 0.999, parity
    assert parity.max_logit_diff < 1e-3 * max(1.0, parity.max_logit), parity
    if export_format == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=out)
        ops = {detail["op_name"] for detail in interpreter._get_ops_details()}
        assert "RESIZE_NEAREST_NEIGHBOR" in ops and not any("FLEX" in op or "CUSTOM" in op for op in ops), ops
