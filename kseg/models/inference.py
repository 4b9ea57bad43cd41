"""Preparing a trained FCN for fast inference: fp32 or bf16 weights, fc6 as one matmul.

`bf16` stores the weights in bfloat16 and computes every convolution in it: on CPUs with
native bfloat16 instructions (AVX512-BF16, AMX) about twice as fast as fp32. Unlike a
`mixed_bfloat16` policy, which keeps float32 variables and casts them on every call (for
fc6's 103M weights that is a large share of the time), the weights are cast once here.
Preprocessing and the final crop stay float32, so logits come out float32 either way.
"""

import keras

from kseg.choices import PRECISIONS
from kseg.cpu import cpu_has_bf16
from kseg.errors import ArgumentError
from kseg.models.layers import CaffeFCNPreprocessing, CropToReference, Im2ColConv2D, VGGPreprocessing

POLICIES = {"fp32": "float32", "bf16": "bfloat16"}
# Preprocessing (MobileNetV3's is a Rescaling) and crops (`CaffeCrop` is one): the Caffe
# FCNs' skip crops too, which is exact (a slice), and lets their final crop keep the
# logits float32.
FLOAT32_LAYERS = (keras.layers.InputLayer, VGGPreprocessing, CaffeFCNPreprocessing, keras.layers.Rescaling,
                  CropToReference)
MATMUL_LAYER_NAMES = ("fc6",)  # large-kernel convolutions on small maps


def slow_precision_warning(precision):
    """A line for the user when `precision` is bf16 on a CPU known to lack bfloat16
    instructions (emulated bf16 is slower than fp32 there); None otherwise."""
    if precision == "bf16" and cpu_has_bf16() is False:
        return ("this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16); --precision bf16 "
                "will be slower than fp32 here")
    return None


def _as_matmul(layer):
    """Whether `layer` is a large-kernel Conv2D to compute as one matmul (`Im2ColConv2D`)."""
    return layer.name in MATMUL_LAYER_NAMES and type(layer) is keras.layers.Conv2D


def inference_model(model, precision="fp32"):
    """Returns `model` set up for inference at `precision` ("fp32" or "bf16").

    The model is returned as it is when nothing needs to change (an fp32 model built by
    this version of kseg); otherwise a copy is built with the same layers and names, fc6
    computed as one matmul, compute layers in the precision's dtype, and the weights
    copied (cast) layer by layer.
    """
    if precision not in PRECISIONS:
        raise ArgumentError(f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}")
    policy = POLICIES[precision]
    if not any(_as_matmul(layer) or (not isinstance(layer, FLOAT32_LAYERS) and layer.dtype_policy.name != policy)
               for layer in model.layers):  # fmt: skip
        return model

    def clone_layer(layer):
        config = layer.get_config()
        if not isinstance(layer, FLOAT32_LAYERS):
            config["dtype"] = policy
        return (Im2ColConv2D if _as_matmul(layer) else type(layer)).from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            copy.get_layer(layer.name).set_weights(weights)
    return copy
