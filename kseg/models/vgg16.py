"""The VGG16 trunk and its convolutionalized classifier, with keras' layer names.

Layer names are the public contract: pretrained weights load by them, `init_from`
copies by them, and a model summary reads like keras.applications.VGG16's.
"""

from keras import layers

# (block, convolutions, channels) of VGG16.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FC_CHANNELS = 4096
FC6_KERNEL = 7  # VGG16's fc1 sees a 7x7x512 map, so fc6 becomes a 7x7 convolution


def scaled(channels, width):
    """Returns `channels` times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def vgg16_trunk(x, width=1.0):
    """Applies VGG16's five convolution blocks and returns every block's pooled output.

    Args:
        x: KerasTensor. Preprocessed BGR images, height and width multiples of 32.
        width: float. Multiplier on every channel count; 1.0 is VGG16.

    Returns:
        dict from "block1_pool" ... "block5_pool" to tensors at strides 2 ... 32.
    """
    taps = {}
    for block, convs, channels in VGG16_BLOCKS:
        for index in range(1, convs + 1):
            x = layers.Conv2D(
                scaled(channels, width), 3, padding="same", activation="relu",
                name=f"block{block}_conv{index}",
            )(x)  # fmt: skip
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
        taps[f"block{block}_pool"] = x
    return taps


def fully_connected_as_convs(x, width=1.0, dropout=0.5):
    """VGG16's fc1 and fc2 as convolutions: `fc6` (7x7) and `fc7` (1x1), each with ReLU.

    'same' padding keeps any input size valid: on a 7x7 pool5 map, fc6's centre output is
    exactly fc1 applied to the flattened map.

    Args:
        x: KerasTensor. block5_pool output.
        width: float. Multiplier on the 4096 channels.
        dropout: float. Dropout rate after fc6 and after fc7 (0.5 in VGG16 and FCN).
    """
    channels = scaled(FC_CHANNELS, width)
    x = layers.Conv2D(channels, FC6_KERNEL, padding="same", activation="relu", name="fc6")(x)
    if dropout:
        x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Conv2D(channels, 1, activation="relu", name="fc7")(x)
    if dropout:
        x = layers.Dropout(dropout, name="drop7")(x)
    return x
