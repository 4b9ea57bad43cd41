"""Counting an FCN's floating-point operations for a given image size, layer by layer.

A multiply-add counts as two FLOPs. Convolutions are counted on the padded map they
run on (every kernel tap, the zero padding included, as the hardware computes it);
transposed convolutions on their input map (each input pixel meets the whole kernel);
bias adds, activations, pooling and the rest are left out (memory-bound, under 1%).
"""

import math
from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class LayerCost:
    name: str
    output_shape: tuple
    flops: int


def layer_costs(model, height, width, batch=1):
    """Returns a `LayerCost` for every layer of a functional `model` on `batch` images of
    `height` x `width`, in the model's layer order (FLOPs are 0 where not counted)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [[layer.input, layer.output] for layer in layers])
    spec = keras.KerasTensor((batch, height, width, model.input_shape[-1]), dtype="float32")
    shapes = probe.compute_output_spec(spec)
    costs = []
    for layer, (inputs, outputs) in zip(layers, shapes):
        flops = 0
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            # The kernel is (rows, columns, inputs per group, outputs): groups need no special case.
            shape = inputs.shape if isinstance(layer, keras.layers.Conv2DTranspose) else outputs.shape
            flops = 2 * shape[0] * shape[1] * shape[2] * math.prod(layer.kernel.shape)
        costs.append(LayerCost(layer.name, tuple(outputs.shape), int(flops)))
    return costs


def count_flops(model, height, width, batch=1):
    """Total FLOPs of `model` on `batch` images of `height` x `width` (see the module)."""
    return sum(cost.flops for cost in layer_costs(model, height, width, batch))
