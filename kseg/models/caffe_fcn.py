"""FCN-32s/16s/8s exactly as the authors' released Caffe nets compute them.

The released models (fcn.berkeleyvision.org: voc-fcn32s, voc-fcn16s, voc-fcn8s and
voc-fcn8s-atonce) differ from kseg's own FCNs in ways that change their outputs, so
their weights need this variant to give the logits they were trained to give:

    uint8 RGB (any H x W) -> BGR float minus the Caffe mean (inside the model)
      -> conv1_1 padded by 100 on every side, 3x3 convolutions padded by 1, each + ReLU
      -> 2x2 / 2 max pooling rounded up (Caffe's ceil mode)
      -> fc6 (7x7 VALID, 4096) + ReLU + dropout -> fc7 (1x1, 4096) + ReLU + dropout
      -> score_fr (1x1, classes)
      32s: upscore (64/32 deconvolution)                                       -> crop 19
      16s: upscore2 (4/2) + score_pool4 cropped at 5 -> upscore16 (32/16)       -> crop 27
      8s:  ... + upscore_pool4 (4/2) + score_pool3 cropped at 9 -> upscore8 (16/8) -> crop 31
      at-once 8s: pool4 x 0.01 and pool3 x 0.0001 before their score layers

Caffe's Deconvolution (no padding) gives (in - 1) * stride + kernel, as
Conv2DTranspose(padding="valid") does, and Caffe's Crop takes [offset : offset + size] of
the reference. Layer names are the Caffe layer names, which the converters in
`kseg.conversion` match blobs against.
"""

import keras
from keras import layers

from kseg.errors import KsegError
from kseg.models.arguments import check_dropout, check_num_classes, check_width
from kseg.models.layers import CaffeCrop, CaffeFCNPreprocessing, CeilPoolPadding, ConstantScale
from kseg.models.transfer import transfer_weights
from kseg.models.vgg16 import FC_CHANNELS, VGG16_BLOCKS, scaled

# variant -> (output stride, final crop); the final upsampling is by the output stride,
# with a kernel twice as large, named upscore (32s) or upscore16 / upscore8.
VARIANTS = {"fcn32s": (32, 19), "fcn16s": (16, 27), "fcn8s": (8, 31), "fcn8s_atonce": (8, 31)}
SKIP_CROPS = {"pool4": 5, "pool3": 9}
ATONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}


def caffe_fcn(variant, num_classes=21, weights=None, width=1.0, dropout=0.5, learn_upsampling=False):
    """Builds a Caffe-exact FCN (random weights; `kseg.conversion` fills them in).

    Args:
        variant: str. "fcn32s", "fcn16s", "fcn8s" or "fcn8s_atonce".
        num_classes: int. Classes scored per pixel (21 for the released VOC models).
        weights: None, or a `.keras` file / model whose layers of matching name and shape
            are copied in.
        width: float. Multiplier on the channel counts (below 1: small models for tests).
        dropout: float. Dropout rate after fc6 and fc7 (inactive at inference).
        learn_upsampling: bool. Whether the final upsampling layer is trained (when
            fine-tuning); the x2 upsampling layers always are.
    """
    if weights == "imagenet":
        raise KsegError("the Caffe FCNs take their weights from a released model: convert one "
                        "with `kseg weights convert FILE --out MODEL.keras`")
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {', '.join(VARIANTS)}. Received: variant={variant!r}")
    check_num_classes(num_classes)
    check_width(width)
    check_dropout(dropout)
    stride, final_crop = VARIANTS[variant]

    images = keras.Input(shape=(None, None, 3), name="images")
    x = CaffeFCNPreprocessing(name="preprocess")(images)
    x = layers.ZeroPadding2D(100, name="conv1_1_pad")(x)
    pools = {}
    for block, convs, channels in VGG16_BLOCKS:
        for index in range(1, convs + 1):
            padding = "valid" if (block, index) == (1, 1) else "same"  # conv1_1: the 100 above
            x = layers.Conv2D(scaled(channels, width), 3, padding=padding, activation="relu",
                              name=f"conv{block}_{index}")(x)
        x = CeilPoolPadding(name=f"pool{block}_pad")(x)
        x = layers.MaxPooling2D(2, strides=2, padding="valid", name=f"pool{block}")(x)
        pools[f"pool{block}"] = x
    x = layers.Conv2D(scaled(FC_CHANNELS, width), 7, padding="valid", activation="relu",
                      name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Conv2D(scaled(FC_CHANNELS, width), 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    x = layers.Conv2D(num_classes, 1, name="score_fr")(x)

    if stride <= 16:
        x = _skip(_upscore(x, "upscore2", 4, 2), pools, "pool4", variant)
    if stride == 8:
        x = _skip(_upscore(x, "upscore_pool4", 4, 2), pools, "pool3", variant)
    final = "upscore" if stride == 32 else f"upscore{stride}"
    x = _upscore(x, final, 2 * stride, stride, trainable=learn_upsampling)
    logits = CaffeCrop(final_crop, dtype="float32", name="score")([x, images])
    model = keras.Model(images, logits, name=f"{variant}_caffe")
    if weights is not None:
        transfer_weights(weights, model)
    return model


def _upscore(x, name, size, step, trainable=True):
    """Caffe's Deconvolution without padding: (in - 1) * step + size."""
    return layers.Conv2DTranspose(x.shape[-1], size, strides=step, padding="valid", use_bias=False,
                                  trainable=trainable, name=name)(x)  # fmt: skip


def _skip(x, pools, pool, variant):
    """Adds the scores of `pools[pool]`, cropped at Caffe's offset, to `x`."""
    source = pools[pool]
    if variant == "fcn8s_atonce":
        source = ConstantScale(ATONCE_SCALES[pool], name=f"scale_{pool}")(source)
    scores = layers.Conv2D(x.shape[-1], 1, name=f"score_{pool}")(source)
    cropped = CaffeCrop(SKIP_CROPS[pool], name=f"score_{pool}c")([scores, x])
    return layers.Add(name=f"fuse_{pool}")([x, cropped])

