"""The VGG16 trunk and its convolutionalized classifier, with keras' layer names.

Layer names are the public contract: pretrained weights load by them, `init_from`
copies by them, and a model summary reads like keras.applications.VGG16's.
"""

import keras
from keras import layers

from kseg.models.layers import Im2ColConv2D

# (block, convolutions, channels) of VGG16.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FC_CHANNELS = 4096
FC6_KERNEL = 7  # VGG16's fc1 sees a 7x7x512 map, so fc6 becomes a 7x7 convolution

# Random initialisation (used as is with weights=None; pretrained weights replace it).
# Keras' VGG16 uses Glorot, which halves the signal at each of the 15 ReLU layers, so a
# randomly initialised FCN's fc7 output is ~1/700 of block1's and training from scratch
# stalls. He initialisation (He et al. 2015) keeps the scale; the first layer is further
# scaled for its input: mean-subtracted pixels in [0, 255] have a standard deviation of
# roughly 64, not 1.
PIXEL_STD = 64.0


def he_initializer(input_std=1.0):
    """He-normal initialisation for a ReLU layer whose inputs have std `input_std`."""
    return keras.initializers.VarianceScaling(
        scale=2.0 / input_std**2, mode="fan_in", distribution="truncated_normal"
    )


def scaled(channels, width):
    """Returns `channels` times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def conv_relu(x, channels, kernel_size, name, batch_norm=False, initializer=None, layer=None):
    """A convolution and its ReLU; with `batch_norm`, convolution (no bias) -> BN -> ReLU.

    The plain form is one layer named `name` with a fused ReLU (keras' VGG16 layout); the
    batch-normalised form adds `{name}_bn` and `{name}_relu`, as in VGG16-BN.
    """
    x = (layer or layers.Conv2D)(
        channels, kernel_size, padding="same", activation=None if batch_norm else "relu",
        use_bias=not batch_norm, kernel_initializer=initializer or he_initializer(), name=name,
    )(x)  # fmt: skip
    if not batch_norm:
        return x
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def conv_stack(x, convs, channels, name, batch_norm=False, first=False):
    """`convs` 3x3 `conv_relu`s named `{name}_conv1`, ...; with `first`, the first one
    takes raw pixels (its He initialisation scaled by `PIXEL_STD`)."""
    for index in range(1, convs + 1):
        initializer = he_initializer(PIXEL_STD if first and index == 1 else 1.0)
        x = conv_relu(x, channels, 3, f"{name}_conv{index}", batch_norm, initializer)
    return x


def vgg16_trunk(x, width=1.0, batch_norm=False):
    """Applies VGG16's five convolution blocks and returns every block's pooled output.

    Args:
        x: KerasTensor. Preprocessed BGR images, height and width multiples of 32.
        width: float. Multiplier on every channel count; 1.0 is VGG16.
        batch_norm: bool. VGG16-BN: batch normalisation after every convolution, for
            training from random weights (there are no ImageNet weights for it in keras).

    Returns:
        dict from "block1_pool" ... "block5_pool" to tensors at strides 2 ... 32, and from
        each block's last convolution ("block1_conv2", ... "block5_conv3") to its output
        (with its ReLU), the input of the block's pooling.
    """
    taps = {}
    for block, convs, channels in VGG16_BLOCKS:
        x = conv_stack(x, convs, scaled(channels, width), f"block{block}", batch_norm, first=block == 1)
        taps[f"block{block}_conv{convs}"] = x
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
        taps[f"block{block}_pool"] = x
    return taps


def fully_connected_as_convs(x, width=1.0, dropout=0.5, batch_norm=False):
    """VGG16's fc1 and fc2 as convolutions: `fc6` (7x7) and `fc7` (1x1), each with ReLU.

    'same' padding keeps any input size valid: on a 7x7 pool5 map, fc6's centre output is
    exactly fc1 applied to the flattened map. fc6 is computed as one matrix multiply over
    gathered patches (`Im2ColConv2D`), which is faster than a generic 7x7 convolution here.

    Args:
        x: KerasTensor. block5_pool output.
        width: float. Multiplier on the 4096 channels.
        dropout: float. Dropout rate after fc6 and after fc7 (0.5 in VGG16 and FCN).
        batch_norm: bool. Batch normalisation after fc6 and fc7 (see `vgg16_trunk`).
    """
    channels = scaled(FC_CHANNELS, width)
    x = conv_relu(x, channels, FC6_KERNEL, "fc6", batch_norm, layer=Im2ColConv2D)
    if dropout:
        x = layers.Dropout(dropout, name="drop6")(x)
    x = conv_relu(x, channels, 1, "fc7", batch_norm)
    if dropout:
        x = layers.Dropout(dropout, name="drop7")(x)
    return x
